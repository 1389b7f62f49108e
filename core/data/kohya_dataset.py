"""Training-image folders as kohya's sd-scripts lay them out, read lazily.

A set is one folder. Images directly in it are used once per epoch; a subfolder named `N_name` (e.g.
`10_zwx style`) holds images used N times per epoch (kohya's repeat folders; the `name` part is only a
label here, the prompt comes from the trainer). Any other subfolder is an error, so a typo never drops
images silently. An image may have a caption: a UTF-8 `.txt` file of the same stem beside it
(`cat.png` + `cat.txt`), its whitespace collapsed; an empty one counts as none.

Only file headers are read up front (size, for the bucket); pixels are decoded per batch by `ImageSets`,
in DataLoader workers, so a set never sits in memory whole.
"""
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from .aspect_buckets import bucket_sizes, fit_to_bucket, nearest_bucket
from ..errors import expect_path
from .image_folder import IMAGE_SUFFIXES, DatasetError

REPEAT_FOLDER = re.compile(r"^(\d+)_(.+)$")
EXIF_ORIENTATION = 0x0112
SIDEWAYS = {5, 6, 7, 8}        # EXIF orientations that swap width and height


@dataclass(frozen=True)
class ImageItem:
    path: Path
    caption: str                 # "" when the image has no caption file
    repeats: int                 # uses per epoch
    bucket: tuple[int, int]      # (width, height) it is trained at


def read_caption(image_path: Path) -> str:
    caption_path = image_path.with_suffix(".txt")
    if not caption_path.is_file():
        return ""
    try:
        return " ".join(caption_path.read_text(encoding="utf-8").split())
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"The caption file {caption_path} cannot be read ({e}): save it as UTF-8 text, or delete "
                           f"it to train {image_path.name} without a caption.") from e


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) as the image is shown, from its header alone."""
    with Image.open(path) as image:
        width, height = image.size
        return (height, width) if image.getexif().get(EXIF_ORIENTATION) in SIDEWAYS else (width, height)


def repeat_folders(folder: Path) -> list[tuple[Path, int]]:
    """(folder, repeats): the set's own folder once, and each `N_name` subfolder N times."""
    found = [(folder, 1)]
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        match = REPEAT_FOLDER.match(sub.name)
        if not match or int(match.group(1)) < 1:
            raise DatasetError(f"{sub} is not a repeat folder: name it N_name with N >= 1 (e.g. 10_{sub.name}) to use "
                               "its images N times per epoch, or move it out of the set.")
        found.append((sub, int(match.group(1))))
    return found


def read_training_folder(folder, resolution: int, what: str) -> list[ImageItem]:
    """Every readable image of the set with its caption, repeats and bucket; `what` names the set in errors.
    Unreadable files are skipped and reported together; a set without a usable image is an error."""
    folder = expect_path(folder, "folder", f"{what} folder", "pass a folder of images", DatasetError)
    buckets = bucket_sizes(resolution)
    items, problems = [], []
    for subfolder, repeats in repeat_folders(folder):
        for path in sorted(p for p in subfolder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                size = upright_size(path)
            except (UnidentifiedImageError, OSError, ValueError) as e:
                problems.append(f"{path.relative_to(folder)}: {e}")
                continue
            items.append(ImageItem(path, read_caption(path), repeats, nearest_bucket(*size, buckets)))
    if not items:
        detail = "; ".join(problems) if problems else f"no file ending in {sorted(IMAGE_SUFFIXES)}"
        raise DatasetError(f"The {what} folder {folder} has no usable image ({detail}). Add .png or .jpg images, "
                           "directly or in N_name repeat folders.")
    if problems:
        print(f"[{what}] skipped {len(problems)} unreadable file(s): " + "; ".join(problems))
    return items


class ImageSets(torch.utils.data.Dataset):
    """Several image sets behind one DataLoader. A request is any object with `set_index`, `item` and `flip`;
    the sample is (request, image (height, width, 3) float32 in [0, 1] at the item's bucket, caption)."""

    def __init__(self, sets: list[list[ImageItem]]):
        self.sets = sets

    def __getitem__(self, request):
        item = self.sets[request.set_index][request.item]
        try:
            with Image.open(item.path) as image:
                pixels = fit_to_bucket(image, item.bucket, request.flip)
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise DatasetError(f"{item.path} cannot be read any more ({e}): replace or remove it, then resume.") from e
        return request, torch.from_numpy(pixels), item.caption
