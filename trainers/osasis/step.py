"""One OSASIS training iteration (Cho et al., CVPR 2024; the authors' utils/trainer.py `train`), on latents.

Both branches start from codes the frozen model A inverted exactly to x_t0, and B = A + LoRA runs the reverse:
- content: the codes of the content images I_A^c (with their own z_sem); the SPN output of I_A^c, weighted by
  --spn-weight, is added before every step; the x0 predictions feed the CLIP directional losses.
- style: the code of the *photoreal counterpart* I_A^s (with z_sem of I_A^s); the SPN output of I_A^s is added
  at full weight, as the authors do; the x0 prediction must reconstruct the *style image* I_B^s. So the term
  teaches photo -> style: at iteration 0 (B = A, SPN zero) the branch reproduces I_A^s, and its loss is the
  distance from I_A^s to I_B^s.

Like with like: the losses see the x0 predictions as `decode_latents(x0, loss_resolution)` makes them (the latent
shrunk, then VAE-decoded), so every image they are compared with (I_A^c, I_A^s, I_B^s) goes the same way:
VAE-encoded, then decoded by that same call (`loss_images`). At iteration 0 (B = A, zero SPN) the last x0
prediction of a content code is then its own image, not the image plus the VAE's and the resize's differences.
"""
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from core.osasis.losses import cross_domain_loss, in_domain_loss, reconstruction_loss
from core.sampling.ddim import ddim_invert, ddim_step
from core.lora.adapters import LoRASet
from core.osasis.decode import add_structure, osasis_decode
from core.osasis.spn import StructurePreservingNetwork

STYLE_BRANCH_SPN_WEIGHT = 1.0   # the authors add the style branch's SPN output unweighted


@dataclass
class Encoded:
    """Per image, what the frozen model A fixes: the images as the losses see them (`loss_images`), latents, the
    semantic code z_sem as (cond, pooled), x_t0."""
    images: torch.Tensor
    clean: torch.Tensor
    codes: list[tuple[torch.Tensor, torch.Tensor | None]]
    code: torch.Tensor

    def __getitem__(self, picked) -> "Encoded":
        rows = picked.tolist() if isinstance(picked, torch.Tensor) else list(range(self.code.shape[0]))[picked]
        return Encoded(self.images[rows], self.clean[rows], [self.codes[i] for i in rows], self.code[rows])

    def rows(self) -> list["Encoded"]:
        return [self[i:i + 1] for i in range(self.code.shape[0])]

    def denoiser_inputs(self, diffusion) -> dict:
        """The rows' denoiser kwargs as one batch, joined as ComfyUI's sampler joins conditionings
        (`ComfyDiffusion.batched_inputs`)."""
        pooled = None if self.codes[0][1] is None else torch.cat([p for _, p in self.codes])
        groups = diffusion.batched_inputs([c for c, _ in self.codes], pooled, self.clean)
        if len(groups) > 1:
            raise ValueError(f"ComfyUI cannot run these {len(self.codes)} content codes as one batch (it would run "
                             f"them in {len(groups)} groups): encode them all with the same template and style encoder")
        return groups[0][1]


def invert_all(diffusion, images: torch.Tensor, codes, sigmas, iterations: int, loss_size: int, desc: str) -> Encoded:
    """Encode IMAGE batch `images` with the VAE and invert each latent to x_t0 under its z_sem (cond, pooled)."""
    latents = diffusion.encode_images(images)
    inputs = [diffusion.model_inputs(cond, pooled, latents[i:i + 1]) for i, (cond, pooled) in enumerate(codes)]
    out = []
    with torch.no_grad():
        for i in tqdm(range(latents.shape[0]), desc=desc, leave=False):
            out.append(ddim_invert(latents[i:i + 1], sigmas, lambda x, s, i=i: diffusion.eps(x, s, inputs[i]),
                                   iterations))
        seen = diffusion.decode_latents(latents, loss_size)
    return Encoded(seen, latents, list(codes), torch.cat(out))


def loss_images(diffusion, images: torch.Tensor, size: int) -> torch.Tensor:
    """IMAGE batch -> what the losses compare x0 predictions with: VAE-encoded, then decoded at `size` exactly
    as the predictions are (`decode_latents`), so both sides carry the same VAE and resize differences."""
    with torch.no_grad():
        return diffusion.decode_latents(diffusion.encode_images(images), size)


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """IMAGE batch (N, H, W, 3) -> (N, size, size, 3), bilinear with antialiasing."""
    return torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True).permute(0, 2, 3, 1)


class OsasisStep(nn.Module):
    """The trainable LoRA and SPN, and one reverse step of each branch with its losses.

    The branches run as two passes, each followed by its own backward: their losses do not mix (the
    directional terms need the content, the reconstruction the style), so the gradients are the same as in
    one pass while the activations held for backward are halved.
    """

    def __init__(self, diffusion, lora: LoRASet, spn: StructurePreservingNetwork, encode, lpips, style: torch.Tensor,
                 photo: torch.Tensor, args):
        super().__init__()
        self.lora, self.spn = lora, spn
        self.diffusion, self.encode, self.lpips, self.args = diffusion, encode, lpips, args
        self.style = loss_images(diffusion, style, args.loss_resolution)   # I_B^s
        self.photo = loss_images(diffusion, photo, args.loss_resolution)   # I_A^s

    def _decoded_x0(self, x, clean, inputs, sigma_a: float, sigma_b: float, timestep, spn_weight: float):
        x = add_structure(x, self.spn, clean, timestep, spn_weight)
        x_next, x0 = ddim_step(x, sigma_a, sigma_b, lambda x_in, s: self.diffusion.eps(x_in, s, inputs))
        return x_next, self.diffusion.decode_latents(x0, self.args.loss_resolution)

    def content_step(self, x, content: Encoded, inputs: dict, sigma_a: float, sigma_b: float, timestep):
        """(x at sigma_b, weighted loss, parts) for the content codes x."""
        x_next, stylised = self._decoded_x0(x, content.clean, inputs, sigma_a, sigma_b, timestep, self.args.spn_weight)
        n = x.shape[0]
        fixed = (content.images, self.style.expand(n, -1, -1, -1), self.photo.expand(n, -1, -1, -1))
        parts = {"cross-domain": cross_domain_loss(self.encode, stylised, *fixed),
                 "in-domain": in_domain_loss(self.encode, stylised, *fixed)}
        return x_next, self.args.cross_weight * parts["cross-domain"] + self.args.in_weight * parts["in-domain"], parts

    def style_step(self, x, photo: Encoded, sigma_a: float, sigma_b: float, timestep):
        """(x at sigma_b, the x0 prediction as an IMAGE, its reconstruction loss against I_B^s) for the code of I_A^s."""
        x_next, reconstruction = self._decoded_x0(x, photo.clean, photo.denoiser_inputs(self.diffusion), sigma_a,
                                                  sigma_b, timestep, STYLE_BRANCH_SPN_WEIGHT)
        return x_next, reconstruction, reconstruction_loss(self.encode, reconstruction, self.style, self.lpips)


def reverse_iteration(loop, step_module: OsasisStep, content: Encoded, photo: Encoded, sigmas, timesteps) -> dict[str, float]:
    """One iteration: B runs the reverse from x_t0 for the content codes and for the code of I_A^s, with an
    optimiser step at every reverse step (then x_t is detached); returns each loss averaged over the steps."""
    x_content, x_style, inputs = content.code, photo.code, content.denoiser_inputs(step_module.diffusion)
    totals, n = {}, len(sigmas) - 1
    for k in range(n):
        sigma_a, sigma_b, t = float(sigmas[k]), float(sigmas[k + 1]), timesteps[k]
        with loop.precision.autocast():
            x_content, content_loss, parts = step_module.content_step(x_content, content, inputs, sigma_a, sigma_b, t)
        loop.backward(content_loss)
        with loop.precision.autocast():
            x_style, _, parts["reconstruction"] = step_module.style_step(x_style, photo, sigma_a, sigma_b, t)
        loop.backward(parts["reconstruction"])
        loop.optimiser_step()
        x_content, x_style = x_content.detach(), x_style.detach()
        parts["total"] = content_loss + parts["reconstruction"]
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value.item() / n
    return totals


def stylise(diffusion, lora: LoRASet, spn, content: Encoded, sigmas, timesteps, spn_weight: float) -> torch.Tensor:
    """Model-space latents of the content codes decoded by B with the SPN: what OSASIS Decode computes."""
    lora.attach()
    with torch.no_grad():
        return torch.cat([osasis_decode(row.code, sigmas,
                                        lambda x, s, inputs=row.denoiser_inputs(diffusion): diffusion.eps(x, s, inputs),
                                        spn, row.clean, timesteps, spn_weight)
                          for row in content.rows()])
