"""Aspect-ratio buckets: train on whole images of any shape instead of square crops.

Every bucket holds about resolution² pixels, its sides multiples of 64 between half and twice the resolution
(kohya's sd-scripts default to 256..1024 at 512 px). An image goes to the bucket nearest its aspect ratio, is
resized to cover it and centre-cropped, so at most a thin edge is lost. A batch holds images of one bucket,
since a UNet batch is one tensor.
"""
import math

import numpy as np
from PIL import Image, ImageOps

from .image_folder import rgb_array, upright_rgb

SIDE_STEP = 64      # latent sides stay multiples of 8, and every UNet level halves them evenly


def bucket_sizes(resolution: int) -> list[tuple[int, int]]:
    """(width, height) of every bucket for `resolution`: width from the smallest side to the largest, the
    height the largest multiple of 64 that keeps the area within resolution²; both orientations."""
    area = resolution * resolution
    smallest = max(SIDE_STEP, resolution // 2 // SIDE_STEP * SIDE_STEP)
    largest = max(smallest, 2 * resolution // SIDE_STEP * SIDE_STEP)
    sizes = set()
    for width in range(smallest, largest + 1, SIDE_STEP):
        height = min(largest, area // width // SIDE_STEP * SIDE_STEP)
        if height >= smallest:
            sizes |= {(width, height), (height, width)}
    return sorted(sizes)


def nearest_bucket(width: int, height: int, buckets: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is nearest the image's (compared as log ratios, so 1:2 and 2:1 are as far
    from 1:1); among equals the larger one."""
    ratio = math.log(width / height)
    return min(buckets, key=lambda b: (abs(math.log(b[0] / b[1]) - ratio), -b[0] * b[1]))


def fit_to_bucket(image: Image.Image, bucket: tuple[int, int], flip: bool = False) -> np.ndarray:
    """Any PIL image -> (height, width, 3) float32 in [0, 1] at the bucket's size: resized to cover, centre-cropped,
    mirrored left-right when `flip`."""
    fitted = ImageOps.fit(upright_rgb(image), bucket, Image.Resampling.BICUBIC)
    if flip:
        fitted = ImageOps.mirror(fitted)
    return rgb_array(fitted)
