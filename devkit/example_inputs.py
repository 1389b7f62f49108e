"""Example input images the bundled workflows load (ComfyUI's LoadImage reads from input/).

Drawn by code with a fixed seed, never downloaded: a "style reference" (a bold palette with brush-like
diagonal strokes) and a "content photo" (simple shapes on a gradient).
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

STYLE_REFERENCE = "stylesmith-style-reference.png"
CONTENT_IMAGE = "stylesmith-content.png"


def style_reference(size: int = 128, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    palette = [(233, 110, 60), (245, 190, 70), (40, 70, 120), (150, 200, 210)]
    image = Image.new("RGB", (size, size), palette[2])
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.integers(-size // 4, size, 2)
        length, width = rng.integers(size // 6, size // 2), int(rng.integers(3, 9))
        draw.line([(x, y), (x + length, y + length // 2)], fill=palette[int(rng.integers(0, 4))], width=width)
    return image


def content_image(size: int = 128) -> Image.Image:
    ramp = np.linspace(0, 1, size)[None, :, None]
    sky = (np.array([90, 140, 210]) * (1 - ramp) + np.array([230, 230, 240]) * ramp)
    image = Image.fromarray(np.repeat(sky, size, axis=0).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, size * 3 // 4, size, size], fill=(70, 110, 60))
    draw.rectangle([size // 3, size // 3, size // 2, size * 3 // 4], fill=(200, 190, 180))
    draw.ellipse([size * 2 // 3, size // 8, size * 5 // 6, size // 4 + size // 8], fill=(250, 220, 120))
    return image


def write_example_inputs(input_dir: Path) -> list[Path]:
    input_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, image in ((STYLE_REFERENCE, style_reference()), (CONTENT_IMAGE, content_image())):
        path = input_dir / name
        if not path.is_file():
            image.save(path)
        written.append(path)
    return written


def write_styleforge_sets(root: Path, references: int = 3) -> dict[str, Path]:
    """Two StyleForge components' folders under `root`: StyleRef images `refs` / `refs2` (procedural styles) and Aux
    images `aux` / `aux2` (the content picture turned); `references` images in `refs`, two in each other folder."""
    sets = {}
    for name, make, count in (("refs", lambda i: style_reference(72, seed=i), references),
                              ("aux", lambda i: content_image(64).rotate(20 * i), 2),
                              ("refs2", lambda i: style_reference(64, seed=50 + i).rotate(90), 2),
                              ("aux2", lambda i: content_image(64).transpose(0), 2)):
        (root / name).mkdir()
        for i in range(count):
            make(i).save(root / name / f"{i}.png")
        sets[name] = root / name
    return sets
