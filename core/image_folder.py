"""Read a folder of training images: every readable image, centre-cropped square at one resolution.

Unreadable files are collected and reported together; an empty result is an error that names
the folder and what was wrong with it.
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class DatasetError(ValueError):
    """A training set is missing, empty or unusable."""


def square_crop(image: Image.Image, resolution: int) -> np.ndarray:
    """Any mode and size -> (resolution, resolution, 3) float32 in [0, 1]."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    image = ImageOps.fit(image.convert("RGB"), (resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def load_image_file(path, resolution: int, what: str) -> torch.Tensor:
    """(1, resolution, resolution, 3): one image, any mode, centre-cropped square."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"The {what} {path} does not exist: pass the path of an image file.")
    try:
        with Image.open(path) as image:
            return torch.from_numpy(square_crop(image, resolution))[None]
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"The {what} {path} cannot be read as an image ({e}). Pass a .png or .jpg file.") from e


def load_image_folder(folder, resolution: int, what: str) -> tuple[torch.Tensor, list[str]]:
    """(N, resolution, resolution, 3) images and their file names; `what` names the set in errors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"The {what} folder {folder} does not exist: pass a folder of images.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images, names, problems = [], [], []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(square_crop(image, resolution))
            names.append(path.name)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            problems.append(f"{path.name}: {e}")
    if not images:
        detail = "; ".join(problems) if problems else f"no file ending in {sorted(IMAGE_SUFFIXES)}"
        raise DatasetError(f"The {what} folder {folder} has no usable image ({detail}). Add .png or .jpg images.")
    if problems:
        print(f"[{what}] skipped {len(problems)} unreadable file(s): " + "; ".join(problems))
    return torch.from_numpy(np.stack(images)), names
