"""A model's own training objective, read from ComfyUI's model_sampling: one code path for every prediction type.

ComfyUI describes how a model was trained through its model_sampling object: `noise_scaling(sigma, noise, x0)` makes
the noisy input x_t, and `calculate_denoised(sigma, output, x_t)` turns the network's raw output into its x0 estimate.
Both are affine, so per item they read

    x_t = c * noise + d * x0            denoised = a * x_t + b * output

with a, b, c, d functions of sigma, found by evaluating the two on zeros and ones. The network's raw output that
gives denoised = x0 exactly is its training target:

    target = (x0 - a * x_t) / b = -(a c / b) * noise + ((1 - a d) / b) * x0

and the loss is the squared error between the raw output, read back from ComfyUI's denoised estimate as
(denoised - a x_t) / b, and that target. For eps prediction (a = 1, b = -sigma, c = sigma, d = 1) the target is the
noise itself, bit for bit; for v prediction it is the velocity of the diffusers convention; for flow matching (CONST:
Flux.2 Klein, Z-Image; a = 1, b = -sigma, c = sigma, d = 1 - sigma) it is noise - x0. No family is named here.
"""
import torch


def _coefficients(model_sampling, sigma: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(a, b, c, d) per item, shaped to broadcast over `like` (N, ...)."""
    shape = (like.shape[0],) + (1,) * (like.ndim - 1)
    one, zero = torch.ones(shape, dtype=like.dtype, device=like.device), torch.zeros(shape, dtype=like.dtype,
                                                                                      device=like.device)
    a = model_sampling.calculate_denoised(sigma, zero, one)
    b = model_sampling.calculate_denoised(sigma, one, zero)
    c = model_sampling.noise_scaling(sigma, one.clone(), zero)
    d = model_sampling.noise_scaling(sigma, zero.clone(), one)
    return a, b, c, d


def training_target(model_sampling, sigma: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """What the network's raw output should be at x_t = noise_scaling(sigma, noise, x0)."""
    a, b, c, d = _coefficients(model_sampling, sigma, x0)
    return noise * (-(a * c) / b) + x0 * ((1 - a * d) / b)


def raw_output(model_sampling, sigma: torch.Tensor, denoised: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """The network's raw output, read back from ComfyUI's x0 estimate `denoised` at input `noisy`."""
    a, b, _, _ = _coefficients(model_sampling, sigma, noisy)
    return (denoised - a * noisy) / b
