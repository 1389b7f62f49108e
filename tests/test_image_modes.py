"""Training images in every PIL mode read to the right [0, 1] RGB (core/data/image_folder.py)."""
import io

import numpy as np
import pytest
from PIL import Image

from core.data.image_folder import load_image_file, square_crop

COLOUR = (200, 100, 50)
GRAY = round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)   # what PIL's L conversion gives for COLOUR


def solid(mode: str) -> tuple[Image.Image, np.ndarray]:
    """A 40 x 30 image of COLOUR in `mode`, and the RGB in [0, 1] it must read as."""
    rgb = Image.new("RGB", (40, 30), COLOUR)
    colour, gray = np.array(COLOUR) / 255.0, np.full(3, GRAY / 255.0)
    if mode == "I;16":
        return Image.fromarray(np.full((30, 40), GRAY * 257, dtype=np.uint16)), gray
    if mode == "I":
        return Image.fromarray(np.full((30, 40), GRAY * 257, dtype=np.int32)), gray
    if mode == "F":
        return Image.fromarray(np.full((30, 40), GRAY / 255.0, dtype=np.float32)), gray
    if mode in ("L", "LA"):
        return rgb.convert(mode), gray
    if mode == "P":   # PIL's own RGB -> P conversion rounds to a web palette
        image = Image.new("P", (40, 30), 0)
        image.putpalette(list(COLOUR))
        return image, colour
    return rgb.convert(mode), colour


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "I", "F"])
def test_every_mode_reads_to_its_colour(mode):
    image, expected = solid(mode)
    assert image.mode == mode
    pixels = square_crop(image, 16)
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, np.broadcast_to(expected, pixels.shape), atol=2 / 255)


def test_sixteen_bit_gray_keeps_its_scale_not_clipped_to_white(tmp_path):
    gradient = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "gray16.png")
    pixels = load_image_file(tmp_path / "gray16.png", 64, "style image")[0].numpy()
    np.testing.assert_allclose(pixels[..., 0], gradient / 65535.0, atol=1e-3)
    assert abs(pixels.mean() - 0.5) < 0.01


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_transparent_pixels_become_white(mode):
    image = Image.new("RGBA", (8, 8), (*COLOUR, 0)).convert(mode)
    np.testing.assert_allclose(square_crop(image, 8), 1.0, atol=1 / 255)


def test_palette_transparency_becomes_white():
    image = Image.new("P", (8, 8), 0)
    image.putpalette([*COLOUR, 0, 0, 0])
    image.info["transparency"] = 0
    np.testing.assert_allclose(square_crop(image, 8), 1.0, atol=1 / 255)


def test_exif_rotation_is_applied():
    wide = Image.new("RGB", (40, 20), (0, 0, 0))
    wide.paste((255, 255, 255), (0, 0, 20, 20))      # left half white
    exif = Image.Exif()
    exif[0x0112] = 6                                   # stored rotated: shown turned 90 degrees clockwise
    buffer = io.BytesIO()
    wide.save(buffer, format="JPEG", exif=exif.tobytes(), quality=100)
    shown = Image.open(io.BytesIO(buffer.getvalue()))
    pixels = square_crop(shown, 20)
    assert pixels[:5].mean() > 0.9 and pixels[-5:].mean() < 0.1, "the white half must be on top once upright"
