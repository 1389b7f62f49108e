"""A procedural style set: K styles x M contents, drawn by code from a seed (never downloaded).

A style fixes a palette (used in a random order with a little jitter per image), a texture (stripes,
dots, noise or none), a stroke width and a colour quantisation; a content fixes shapes (kind, count,
places, sizes). Rendering content m in style k
gives image (k, m): the same content looks different in each style, and the style label is known.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

TEXTURES = ("stripes", "dots", "noise", "flat")
SHAPES = ("ellipse", "rectangle", "triangle")


@dataclass(frozen=True)
class Style:
    palette: tuple          # background + 3 foreground RGB colours
    texture: str
    texture_scale: int
    stroke: int
    levels: int             # colour quantisation levels per channel


@dataclass(frozen=True)
class Content:
    shapes: tuple           # (kind, x0, y0, x1, y1) in [0, 1]
    caption: str


def make_style(rng: np.random.Generator, index: int) -> Style:
    """Style `index`: textures go round TEXTURES, so any four consecutive styles differ in texture too."""
    palette = tuple(tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(4))
    return Style(palette, TEXTURES[index % len(TEXTURES)], int(rng.integers(3, 9)), int(rng.integers(1, 6)),
                 int(rng.integers(3, 8)))


def make_content(rng: np.random.Generator) -> Content:
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0, 0.6, 2)
        w, h = rng.uniform(0.2, 0.45, 2)
        shapes.append((str(rng.choice(SHAPES)), float(x0), float(y0), float(x0 + w), float(y0 + h)))
    kinds = sorted({s[0] for s in shapes})
    return Content(tuple(shapes), f"{len(shapes)} {' and '.join(kinds)} shape(s), in the style of sks")


def jittered_palette(style: Style, rng: np.random.Generator, jitter: float) -> list[tuple]:
    """The style's colours in a random order, each shifted a little: colour alone does not give the style away."""
    order = rng.permutation(len(style.palette))
    return [tuple(int(np.clip(c + rng.normal(0, jitter), 0, 255)) for c in style.palette[i]) for i in order]


def render(style: Style, content: Content, size: int, rng: np.random.Generator, jitter: float = 25.0) -> Image.Image:
    palette = jittered_palette(style, rng, jitter)
    image = Image.new("RGB", (size, size), palette[0])
    draw = ImageDraw.Draw(image)
    for index, (kind, x0, y0, x1, y1) in enumerate(content.shapes):
        box = [x0 * size, y0 * size, x1 * size, y1 * size]
        fill, outline = palette[1 + index % 3], palette[1 + (index + 1) % 3]
        if kind == "ellipse":
            draw.ellipse(box, fill=fill, outline=outline, width=style.stroke)
        elif kind == "rectangle":
            draw.rectangle(box, fill=fill, outline=outline, width=style.stroke)
        else:
            draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=fill,
                         outline=outline, width=style.stroke)
    pixels = np.asarray(image, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    if style.texture == "stripes":
        pixels *= (0.75 + 0.25 * (((xx + yy) // style.texture_scale) % 2))[..., None]
    elif style.texture == "dots":
        pixels *= (1.0 - 0.3 * (((xx % style.texture_scale) < 2) & ((yy % style.texture_scale) < 2)))[..., None]
    elif style.texture == "noise":
        pixels += rng.normal(0, 12.0, pixels.shape)
    step = 255.0 / (style.levels - 1)
    pixels = np.round(np.clip(pixels, 0, 255) / step) * step
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def write_synthetic_style_set(folder, styles: int, contents: int, size: int = 64, seed: int = 0) -> Path:
    """Render every (style, content) pair into `folder` and write its manifest.jsonl; return the manifest."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    style_list = [make_style(rng, k) for k in range(styles)]
    content_list = [make_content(rng) for _ in range(contents)]
    lines = []
    for k, style in enumerate(style_list):
        for m, content in enumerate(content_list):
            name = f"style{k:02d}____content{m:03d}.png"
            render(style, content, size, np.random.default_rng([seed, k, m])).save(folder / name)
            lines.append(json.dumps({"image": name, "caption": content.caption, "style": f"style{k:02d}"}))
    manifest = folder / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest
