"""The evaluation manifest: one JSON object per line (`manifest.jsonl`), one line per generated image.

    {"method": "style_tokens", "image": "style_tokens/c0-s7.png", "prompt": "a lighthouse on a cliff",
     "reference": "inputs/style.png", "content": "inputs/content.png", "seed": 7, "case": "c0"}

`method`, `image`, `prompt` and `reference` are required; `content` (for the content scores), `seed` and
`case` (what the grid's columns line up on; default: prompt + reference + content) are optional. Relative
paths are relative to the manifest's folder. The format is documented in docs/evaluation.md.
"""
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError

MANIFEST_NAME = "manifest.jsonl"
REQUIRED = ("method", "image", "prompt", "reference")


class ManifestError(UserError, ValueError):
    """A manifest is missing, empty or malformed, or names files that are not there."""


@dataclass(frozen=True)
class EvalRow:
    method: str
    image: Path
    prompt: str
    reference: Path
    content: Path | None = None
    seed: int | None = None
    case: str = ""

    def to_json(self, root: Path) -> dict:
        d = asdict(self)
        for key in ("image", "reference", "content"):
            if d[key] is not None:
                d[key] = _relative(Path(d[key]), root)
        return d


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path.resolve())


def manifest_path(source) -> Path:
    """The manifest file of `source`: the file itself, or `manifest.jsonl` in a folder."""
    source = Path(source)
    if source.is_dir():
        source = source / MANIFEST_NAME
        if not source.is_file():
            raise ManifestError(f"{source.parent} has no {MANIFEST_NAME}: write one line per image "
                                "(docs/evaluation.md), or pass --spec to generate the images.")
    elif not source.is_file():
        raise ManifestError(f"The outputs {source} do not exist: pass a folder holding {MANIFEST_NAME}, or the manifest file.")
    return source


def _resolve(path: str, root: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def _row(line_no: int, data, root: Path, path: Path) -> EvalRow:
    where = f"{path.name} line {line_no}"
    if not isinstance(data, dict):
        raise ManifestError(f"{where} is a {type(data).__name__}, not a JSON object with {', '.join(REQUIRED)}.")
    missing = [k for k in REQUIRED if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        raise ManifestError(f"{where} lacks {', '.join(missing)} (each a non-empty string); see docs/evaluation.md.")
    unknown = sorted(set(data) - {"method", "image", "prompt", "reference", "content", "seed", "case"})
    if unknown:
        raise ManifestError(f"{where} has unknown keys {unknown}; the keys are method, image, prompt, reference, "
                            "content, seed, case.")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ManifestError(f"{where}: seed must be an integer, got {seed!r}.")
    content = data.get("content")
    if content is not None and not isinstance(content, str):
        raise ManifestError(f"{where}: content must be a path string or null, got {content!r}.")
    case = data.get("case") or f"{data['prompt']} | {data['reference']} | {content or '-'}"
    return EvalRow(method=data["method"].strip(), image=_resolve(data["image"], root), prompt=data["prompt"],
                   reference=_resolve(data["reference"], root), content=_resolve(content, root) if content else None,
                   seed=seed, case=str(case))


def read_manifest(source) -> list[EvalRow]:
    """Every row of a manifest, checked: well-formed lines, no duplicate image, every named file present."""
    path = manifest_path(source)
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise ManifestError(f"{path.name} line {line_no} is not JSON ({e.msg}); write one JSON object per line.") from e
        rows.append(_row(line_no, data, path.parent, path))
    if not rows:
        raise ManifestError(f"{path} is empty: write one JSON line per generated image (docs/evaluation.md).")
    seen = set()
    for row in rows:
        if row.image in seen:
            raise ManifestError(f"{path.name} lists {row.image} twice; each generated image gets one line.")
        seen.add(row.image)
    absent = sorted({str(p) for r in rows for p in (r.image, r.reference, r.content) if p is not None and not p.is_file()})
    if absent:
        raise ManifestError(f"{path.name} names {len(absent)} file(s) that do not exist, e.g. {absent[:3]}; "
                            "fix the paths (relative to the manifest's folder) or drop those lines.")
    return rows


def write_manifest(rows: list[EvalRow], path) -> Path:
    path = Path(path)
    path.write_text("".join(json.dumps(r.to_json(path.parent)) + "\n" for r in rows), encoding="utf-8")
    return path
