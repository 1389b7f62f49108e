"""ComfyUI IMAGE batches -> normalised encoder input, with the checkpoint's own preprocessing.

ComfyUI images are float (B, H, W, C) in [0, 1]. Grayscale is repeated to RGB; an alpha channel
is dropped (ComfyUI carries transparency as a separate MASK). Then: resize the shortest side to
`size`, centre-crop to size x size, normalise with the checkpoint's mean/std (CLIP's, or the
style-encoder authors' 0.5/0.5).
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from einops import rearrange


@dataclass(frozen=True)
class Preprocess:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        return cls(size=int(d["size"]), mean=tuple(d["mean"]), std=tuple(d["std"]),
                   interpolation=d.get("interpolation", "bicubic"))


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) with C in {1, 3, 4} -> (B, H, W, 3)."""
    if images.ndim == 3:
        images = images.unsqueeze(-1)
    if images.ndim != 4:
        raise ValueError(f"Expected an IMAGE batch of shape (batch, height, width, channels); got {tuple(images.shape)}.")
    channels = images.shape[-1]
    if channels == 1:
        return images.expand(-1, -1, -1, 3)
    if channels in (3, 4):
        return images[..., :3]
    raise ValueError(f"An IMAGE with {channels} channels cannot be read as a picture: expected 1 (gray), 3 (RGB) "
                     "or 4 (RGBA). Convert it with an image node first.")


def preprocess(images: torch.Tensor, spec: Preprocess) -> torch.Tensor:
    """(B, H, W, C) in [0, 1] -> (B, 3, size, size), normalised."""
    if images.shape[0] == 0:
        raise ValueError("The IMAGE batch is empty: connect at least one reference image.")
    x = rearrange(to_rgb(images).float(), "b h w c -> b c h w")
    height, width = x.shape[-2:]
    scale = spec.size / min(height, width)
    new_h, new_w = max(spec.size, round(height * scale)), max(spec.size, round(width * scale))
    if (new_h, new_w) != (height, width):
        x = F.interpolate(x, size=(new_h, new_w), mode=spec.interpolation, align_corners=False,
                          antialias=spec.interpolation in ("bilinear", "bicubic") and scale < 1)
    top, left = (new_h - spec.size) // 2, (new_w - spec.size) // 2
    x = x[..., top:top + spec.size, left:left + spec.size].clamp(0, 1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
