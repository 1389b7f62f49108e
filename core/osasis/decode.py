"""OSASIS structural codes and the stylising decode (Cho et al., CVPR 2024), on latents; pure torch.

The structural code is the input latent inverted to t0 of a schedule (core/sampling/ddim.py). The decode runs
the rest of the schedule with the styled model (base + LoRA), adding the structure-preserving
network's output, weighted, to x_t before every step (`add_structure`), as in training.
"""
from dataclasses import dataclass

import torch

from ..sampling.ddim import StepCallback, ddim_decode
from .spn import StructurePreservingNetwork


@dataclass(frozen=True)
class StructuralCode:
    code: torch.Tensor        # x_t0, (B, C, h, w), in the LATENT's space
    clean: torch.Tensor       # the input latent the code came from (the SPN's input), same space
    sigmas: torch.Tensor      # the sub-schedule from sigma(t0) down to 0
    t0: float
    steps: int
    scheduler: str
    family: str


def add_structure(x: torch.Tensor, spn: StructurePreservingNetwork, clean: torch.Tensor, timestep: torch.Tensor,
                  weight: float) -> torch.Tensor:
    """x_t + weight * SPN(x_clean, t): the step the trainer and the decode node share."""
    t = timestep.reshape(-1).to(x.device).expand(x.shape[0])
    return x + weight * spn(clean.to(x), t).to(x.dtype)


def osasis_decode(x: torch.Tensor, sigmas: torch.Tensor, eps, spn: StructurePreservingNetwork | None,
                  clean: torch.Tensor | None, timesteps: torch.Tensor | None, spn_weight: float,
                  callback: StepCallback | None = None) -> torch.Tensor:
    """DDIM decode from x_t0; with an SPN and a non-zero weight, its output is added before every step."""
    before_step = None
    if spn is not None and spn_weight != 0:
        def before_step(x_t, i):
            with torch.no_grad():
                return add_structure(x_t, spn, clean, timesteps[i], spn_weight)
    return ddim_decode(x, sigmas, eps, callback, before_step)


def schedule_difference(structure: StructuralCode, t0: float, steps: int, scheduler: str) -> str | None:
    """Why decoding `structure` with a style trained on (t0, steps, scheduler) gives a weaker style, or None.

    The style's LoRA and SPN learned the noise levels of their training schedule; a structural code made on
    another schedule is decoded through levels they never saw, and the style comes out weaker."""
    made, trained = (structure.t0, structure.steps, structure.scheduler), (t0, steps, scheduler)
    if abs(made[0] - trained[0]) <= 1e-6 and made[1:] == trained[1:]:
        return None
    return (f"the structural code was made at t0={made[0]:g} of {made[1]} {made[2]} steps, but the OSASIS style was "
            f"trained at t0={t0:g} of {steps} {scheduler} steps, so the style comes out weaker: set OSASIS Structural "
            f"Encode to t0={t0:g}, steps={steps}, scheduler={scheduler} (Load OSASIS Style's info shows them), or keep "
            f"yours knowingly.")
