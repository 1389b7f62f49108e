"""Deterministic DDIM decoding and its exact inversion, in the sigma (k-diffusion) form.

With x = z + sigma * eps (the form ComfyUI's samplers use), one DDIM step (eta = 0) from sigma_a down to
sigma_b is an Euler step of the probability-flow ODE (Song et al. 2021, DDIM eq. 13 rewritten in sigma):

    decode:  x_b = x_a + (sigma_b - sigma_a) * eps(x_a, sigma_a)

Plain DDIM inversion (OSASIS, diffae) guesses x_a = x_b + (sigma_a - sigma_b) * eps(x_b, sigma_a), which is
only approximately the inverse. Solving the decode step for x_a by fixed-point iteration,

    x_a <- x_b + (sigma_a - sigma_b) * eps(x_a, sigma_a),

makes the structural encode an exact inverse of the decode (iterations = 0 gives plain inversion).
`eps` is any callable (x, sigma) -> predicted noise; nothing here imports ComfyUI.
"""
from collections.abc import Callable, Sequence

import torch

Eps = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int], None]


def eps_from_x0(x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The noise prediction from an x0 prediction (ComfyUI's models return x0 for any prediction type):
    x = x0 + sigma * eps, so eps = (x - x0) / sigma; `sigma` is one value per batch item."""
    return (x - x0) / sigma.reshape(-1, *[1] * (x.ndim - 1))


def sub_schedule(sigmas: Sequence[float] | torch.Tensor, t0: float) -> torch.Tensor:
    """The tail of a descending schedule (ending at 0) that starts at fraction t0 of it (0 < t0 <= 1)."""
    if not 0 < t0 <= 1:
        raise ValueError(f"t0 must be in (0, 1] (a fraction of the schedule); got {t0}")
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
    steps = len(sigmas) - 1
    keep = max(1, round(t0 * steps))
    return sigmas[steps - keep:]


def ddim_step(x: torch.Tensor, sigma_a: float, sigma_b: float, eps: Eps) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode step from sigma_a to sigma_b: (x at sigma_b, the x0 prediction x - sigma_a * eps)."""
    e = eps(x, x.new_tensor([sigma_a]))
    return x + (sigma_b - sigma_a) * e, x - sigma_a * e


def ddim_decode(x: torch.Tensor, sigmas: torch.Tensor, eps: Eps, callback: StepCallback | None = None,
                before_step: Callable[[torch.Tensor, int], torch.Tensor] | None = None) -> torch.Tensor:
    """Run the descending `sigmas` from x at sigmas[0] down to sigmas[-1].

    `before_step(x, i)` may change x before step i (OSASIS adds the structure-preserving network's output there).
    """
    for i in range(len(sigmas) - 1):
        if before_step is not None:
            x = before_step(x, i)
        x, _ = ddim_step(x, float(sigmas[i]), float(sigmas[i + 1]), eps)
        if callback:
            callback(i, len(sigmas) - 1)
    return x


def ddim_invert(x: torch.Tensor, sigmas: torch.Tensor, eps: Eps, iterations: int = 3, tolerance: float = 1e-7,
                callback: StepCallback | None = None) -> torch.Tensor:
    """From x at sigmas[-1] back up to sigmas[0], each step the inverse of `ddim_decode`'s step.

    Each step starts from the plain DDIM guess and refines it at most `iterations` times, stopping
    early once an update changes x by less than `tolerance` relative to its norm.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0; got {iterations}")
    n = len(sigmas) - 1
    for step, i in enumerate(range(n - 1, -1, -1)):
        sigma_a, sigma_b = float(sigmas[i]), float(sigmas[i + 1])
        sigma = x.new_tensor([sigma_a])
        x_a = x + (sigma_a - sigma_b) * eps(x, sigma)
        for _ in range(iterations):
            refined = x + (sigma_a - sigma_b) * eps(x_a, sigma)
            change = (refined - x_a).norm() / refined.norm().clamp_min(1e-12)
            x_a = refined
            if change < tolerance:
                break
        x = x_a
        if callback:
            callback(step, n)
    return x
