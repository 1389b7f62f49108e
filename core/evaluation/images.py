"""Image files for the evaluation, read once each as ComfyUI-style float (1, H, W, 3) batches in [0, 1]."""
from functools import lru_cache
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from ..data.image_folder import DatasetError, rgb_array, upright_rgb


@lru_cache(maxsize=512)
def _read(path: str) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            return torch.from_numpy(rgb_array(upright_rgb(image)).copy())[None]
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"{path} cannot be read as an image ({e}); replace it or drop its row from the manifest.") from e


def read_image(path) -> torch.Tensor:
    """(1, H, W, 3) float32 in [0, 1], at the file's own size (each metric resizes as its model needs)."""
    return _read(str(Path(path).resolve()))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) in [0, 1] -> (B, 3, H, W) uint8, what Inception feature extractors take."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous()
