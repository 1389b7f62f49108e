"""The comparison grid as one PNG: a column per case (prompt, reference, content, seed), a row for the
reference, one for the content image and one per method, each cell a square thumbnail."""
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps

from .manifest import EvalRow
from ..data.image_folder import upright_rgb

LABEL_WIDTH = 150
HEADER = 18


def column_key(row: EvalRow) -> tuple:
    return (row.case, row.seed if row.seed is not None else -1)


def grid_layout(rows: list[EvalRow], max_columns: int) -> tuple[list[tuple], list[str], dict]:
    """(columns, methods, {(method, column): row}) in first-seen order, at most max_columns columns."""
    columns, methods, cells = [], [], {}
    for row in rows:
        key = column_key(row)
        if key not in columns:
            if len(columns) == max_columns:
                continue
            columns.append(key)
        if row.method not in methods:
            methods.append(row.method)
        cells[(row.method, key)] = row
    return columns, methods, cells


def cell_source(label: str, key: tuple, first: dict, cells: dict) -> Path | None:
    """The image in grid row `label` (reference, content or a method), column `key`; None for an empty cell."""
    if label == "reference":
        return first[key].reference
    if label == "content":
        return first[key].content
    row = cells.get((label, key))
    return row.image if row is not None else None


def _thumb(path, size: int) -> Image.Image:
    with Image.open(path) as image:
        return ImageOps.fit(upright_rgb(image).convert("RGB"), (size, size), Image.Resampling.BICUBIC)


def write_grid_png(rows: list[EvalRow], path, size: int = 128, max_columns: int = 12) -> Path:
    columns, methods, cells = grid_layout(rows, max_columns)
    first = {key: next(r for r in rows if column_key(r) == key) for key in columns}
    labels = ["reference", "content"] + methods
    canvas = Image.new("RGB", (LABEL_WIDTH + size * len(columns), HEADER + size * len(labels)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, key in enumerate(columns):
        seed = "" if key[1] == -1 else f" s{key[1]}"
        draw.text((LABEL_WIDTH + j * size + 4, 3), f"{j + 1}{seed}", fill="black")
    for i, label in enumerate(labels):
        y = HEADER + i * size
        draw.text((4, y + size // 2 - 6), label[:22], fill="black")
        for j, key in enumerate(columns):
            source = cell_source(label, key, first, cells)
            if source is not None:
                canvas.paste(_thumb(source, size), (LABEL_WIDTH + j * size, y))
            else:
                draw.text((LABEL_WIDTH + j * size + 8, y + size // 2 - 6), "-", fill="gray")
    path = Path(path)
    canvas.save(path)
    return path
