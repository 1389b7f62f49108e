"""Read a folder of training images: every readable image, centre-cropped square at one resolution.

Unreadable files are collected and reported together; an empty result is an error that names
the folder and what was wrong with it.
"""
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import StyleSmithError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}


class DatasetError(StyleSmithError, ValueError):
    """A training set is missing, empty or unusable."""


def upright_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image, EXIF orientation applied, as 8-bit "RGB", or as "F" (gray in [0, 1]) when it has more bits.

    High-bit-depth grayscale keeps its scale: I;16 (16-bit PNG) and I (32-bit integer; older Pillows open 16-bit
    PNGs so) are read as 0..65535, as ComfyUI's LoadImage reads them, and F as already in [0, 1]; PIL's own convert("RGB") would clip them at 255, almost
    white. Transparent pixels (RGBA, LA, PA, P with transparency) are composited onto white; CMYK, YCbCr, LAB,
    HSV and 1-bit images go through PIL's conversion.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":
        scale = 1.0 if image.mode == "F" else 65535.0
        return Image.fromarray(np.clip(np.asarray(image, dtype=np.float32) / scale, 0.0, 1.0))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image.convert("RGBA"))
    return image.convert("RGB")


def rgb_array(image: Image.Image) -> np.ndarray:
    """An image from upright_rgb -> (H, W, 3) float32 in [0, 1]."""
    if image.mode == "F":
        return np.repeat(np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)[..., None], 3, axis=2)
    return np.asarray(image, dtype=np.float32) / 255.0


def square_crop(image: Image.Image, resolution: int) -> np.ndarray:
    """Any mode and size -> (resolution, resolution, 3) float32 in [0, 1], centre-cropped square."""
    return rgb_array(ImageOps.fit(upright_rgb(image), (resolution, resolution), Image.Resampling.BICUBIC))


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


def image_files(folder, what: str) -> list[Path]:
    """The readable image files of `folder`, sorted; only headers are read, so this is cheap for large folders.
    `what` names the set in errors and in the report of skipped files."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"The {what} folder {folder} does not exist: pass a folder of images.")
    files, problems = [], []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with Image.open(path):
                files.append(path)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            problems.append(f"{path.name}: {e}")
    if not files:
        detail = "; ".join(problems) if problems else f"no file ending in {sorted(IMAGE_SUFFIXES)}"
        raise DatasetError(f"The {what} folder {folder} has no usable image ({detail}). Add .png or .jpg images.")
    if problems:
        print(f"[{what}] skipped {len(problems)} unreadable file(s): " + "; ".join(problems))
    return files


def load_image_folder(folder, resolution: int, what: str) -> tuple[torch.Tensor, list[str]]:
    """(N, resolution, resolution, 3) images and their file names; `what` names the set in errors."""
    files = image_files(folder, what)
    return torch.cat([load_image_file(path, resolution, what) for path in files]), [p.name for p in files]
