"""The comparison spec: which (reference, prompt, content) cases to generate with which methods and seeds.

A JSON file (documented in docs/evaluation.md). Model files are names in the ComfyUI models folders, as the
loader nodes list them; each case may override them, since a StyleForge LoRA or an OSASIS style is trained
per style. Image paths are relative to the spec's folder.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

from .manifest import ManifestError

METHODS = ("style_tokens", "styleforge", "osasis", "ipadapter")
MODEL_KEYS = ("style_encoder", "styleforge_lora", "osasis_style")
SAMPLING = {"steps": 20, "cfg": 7.5, "sampler": "euler", "scheduler": "normal", "width": 512, "height": 512,
            "negative": "blurry, low quality", "content_denoise": 0.6}
OSASIS = {"t0": 0.5, "steps": 50, "inversion_iterations": 3, "mix": 0.5, "spn_weight": 0.1, "lora_strength": 1.0}
IPADAPTER = {"preset": "PLUS (high strength)", "weight": 1.0, "weight_type": "style transfer"}


@dataclass(frozen=True)
class Case:
    name: str
    reference: Path
    prompt: str
    content: Path | None
    models: dict          # style_encoder / styleforge_lora / osasis_style -> file name (or None)


@dataclass
class ComparisonSpec:
    checkpoint: str
    cases: list[Case]
    seeds: list[int]
    methods: tuple[str, ...] = METHODS
    sampling: dict = field(default_factory=lambda: dict(SAMPLING))
    osasis: dict = field(default_factory=lambda: dict(OSASIS))
    ipadapter: dict = field(default_factory=lambda: dict(IPADAPTER))


def _settings(data: dict, key: str, defaults: dict, where: str) -> dict:
    given = data.get(key, {})
    if not isinstance(given, dict):
        raise ManifestError(f"{where}: {key} must be an object like {json.dumps(defaults)}.")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ManifestError(f"{where}: {key} has unknown keys {unknown}; known: {sorted(defaults)}.")
    merged = {**defaults, **given}
    for k, v in merged.items():
        if type(v) is not type(defaults[k]) and not (isinstance(defaults[k], float) and type(v) is int):
            raise ManifestError(f"{where}: {key}.{k} must be a {type(defaults[k]).__name__}, got {v!r}.")
    return merged


def _image(value, root: Path, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ManifestError(f"{where} must be the path of an image file.")
    path = Path(value) if Path(value).is_absolute() else root / value
    if not path.is_file():
        raise ManifestError(f"{where}: {path} does not exist (paths are relative to the spec's folder).")
    return path


def read_spec(path) -> ComparisonSpec:
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"The comparison spec {path} does not exist: write one (docs/evaluation.md).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path.name} is not valid JSON ({e.msg}, line {e.lineno}).") from e
    where = path.name
    if not isinstance(data, dict) or not isinstance(data.get("checkpoint"), str):
        raise ManifestError(f"{where} needs a \"checkpoint\" (a file name in models/checkpoints) and \"cases\".")
    known = {"checkpoint", "cases", "seeds", "methods", "sampling", "osasis", "ipadapter", *MODEL_KEYS}
    if set(data) - known:
        raise ManifestError(f"{where} has unknown keys {sorted(set(data) - known)}; known: {sorted(known)}.")
    methods = tuple(data.get("methods", METHODS))
    if not methods or set(methods) - set(METHODS):
        raise ManifestError(f"{where}: methods must be a non-empty list drawn from {list(METHODS)}, got {list(methods)}.")
    seeds = data.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ManifestError(f"{where}: seeds must be a non-empty list of integers, got {seeds!r}.")
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise ManifestError(f"{where}: cases must be a non-empty list of {{\"reference\", \"prompt\", \"content\"}} objects.")
    cases = []
    for i, c in enumerate(raw_cases):
        w = f"{where} cases[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("prompt"), str) or not c["prompt"].strip():
            raise ManifestError(f"{w} needs a non-empty \"prompt\" and a \"reference\" image.")
        unknown = sorted(set(c) - {"name", "reference", "prompt", "content", *MODEL_KEYS})
        if unknown:
            raise ManifestError(f"{w} has unknown keys {unknown}.")
        content = _image(c["content"], path.parent, f"{w}.content") if c.get("content") else None
        models = {k: c.get(k, data.get(k)) for k in MODEL_KEYS}
        cases.append(Case(name=str(c.get("name") or f"case{i}"), reference=_image(c.get("reference"), path.parent, f"{w}.reference"),
                          prompt=c["prompt"].strip(), content=content, models=models))
    if len({c.name for c in cases}) != len(cases):
        raise ManifestError(f"{where}: case names must be unique.")
    return ComparisonSpec(checkpoint=data["checkpoint"], cases=cases, seeds=seeds, methods=methods,
                          sampling=_settings(data, "sampling", SAMPLING, where),
                          osasis=_settings(data, "osasis", OSASIS, where),
                          ipadapter=_settings(data, "ipadapter", IPADAPTER, where))
