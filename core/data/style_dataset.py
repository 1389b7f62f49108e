"""A Style30k-captions-like training set: image + content caption + style label, validated up front.

Two layouts (docs/datasets.md):
- a JSONL manifest, one object per line: {"image": "rel/or/abs.png", "caption": "..., in the style of sks",
  "style": "label"} (optional "id"; default the image path relative to the manifest's folder);
- a Style30K-style folder: the style label is the file-name prefix before "____"
  (e.g. "wc012____0003.jpg" has style "wc012"); the caption is the text of a sidecar "<stem>.txt",
  else DEFAULT_CAPTION.
Every problem (missing or unreadable image, empty caption, duplicate id, missing style) goes in one
report; the usable rest is kept, and an empty result is an error.
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..errors import expect_path
from .image_folder import IMAGE_SUFFIXES, DatasetError

STYLE30K_SEPARATOR = "____"
DEFAULT_CAPTION = "a picture, in the style of sks"


@dataclass(frozen=True)
class StyleExample:
    id: str
    image: Path
    caption: str
    style: str


@dataclass
class StyleDataset:
    examples: list[StyleExample]
    problems: list[str]

    @property
    def styles(self) -> list[str]:
        return sorted({e.style for e in self.examples})

    def fingerprint(self) -> str:
        """sha256 over (id, caption, style) of every example: provenance for the files trained on it."""
        h = hashlib.sha256()
        for e in self.examples:
            h.update(f"{e.id}\t{e.caption}\t{e.style}\n".encode())
        return h.hexdigest()


def _readable(path: Path) -> str | None:
    if not path.is_file():
        return "missing"
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as e:  # PIL raises many types for broken files; each is reported, none is hidden
        return f"unreadable ({type(e).__name__}: {e})"
    return None


def _validate(candidates: list[tuple[str, Path, str, str]], source: str) -> StyleDataset:
    examples, problems, seen = [], [], set()
    for example_id, image, caption, style in candidates:
        trouble = _readable(image)
        if trouble:
            problems.append(f"{example_id}: image {image} is {trouble}")
        elif not caption.strip():
            problems.append(f"{example_id}: empty caption")
        elif not style.strip():
            problems.append(f"{example_id}: no style label")
        elif example_id in seen:
            problems.append(f"{example_id}: duplicate id")
        else:
            seen.add(example_id)
            examples.append(StyleExample(example_id, image, caption.strip(), style.strip()))
    if not examples:
        listed = "\n  ".join(problems[:20]) or "no entries"
        raise DatasetError(f"No usable example in {source}:\n  {listed}\nFix the entries above, or point at another "
                           "manifest or folder.")
    return StyleDataset(examples, problems)


def read_manifest(path) -> StyleDataset:
    path = expect_path(path, "file", "manifest", "pass a JSONL file or a folder of images", DatasetError)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DatasetError(f"The manifest {path} is not UTF-8 text ({e}): pass a JSONL file (one {{image, caption, "
                           "style}} object per line) or a folder of images.") from None
    candidates, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            image = Path(record["image"])
            image = image if image.is_absolute() else path.parent / image
            candidates.append((str(record.get("id") or record["image"]), image, str(record.get("caption", "")),
                               str(record.get("style", ""))))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            problems.append(f"line {number}: not a {{image, caption, style}} object ({e})")
    try:
        dataset = _validate(candidates, str(path))
    except DatasetError as e:
        raise DatasetError(str(e) + ("\n  " + "\n  ".join(problems) if problems else "")) from None
    dataset.problems[:0] = problems
    return dataset


def read_style30k_folder(folder) -> StyleDataset:
    folder = expect_path(folder, "folder", "image folder", "pass a folder of images or a JSONL manifest", DatasetError)
    candidates = []
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        style = image.stem.split(STYLE30K_SEPARATOR)[0] if STYLE30K_SEPARATOR in image.stem else ""
        sidecar = image.with_suffix(".txt")
        caption = sidecar.read_text() if sidecar.is_file() else DEFAULT_CAPTION
        candidates.append((str(image.relative_to(folder)), image, caption, style))
    return _validate(candidates, str(folder))


def read_style_dataset(source) -> StyleDataset:
    """A manifest (.jsonl) or a Style30K-style folder; the problems found are in `.problems`."""
    source = Path(source)
    if source.suffix.lower() in IMAGE_SUFFIXES and source.is_file():
        raise DatasetError(f"--data {source} is an image file: pass a folder of images, or a JSONL manifest that "
                           "lists them.")
    return read_style30k_folder(source) if source.is_dir() else read_manifest(source)
