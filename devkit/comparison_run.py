"""Generate a comparison spec's images through a running ComfyUI server and write their manifest.

Each case's images are copied into the server's input folder (`input/stylesmith-eval/`, named by content
hash) for LoadImage; every method then runs once per seed, and the image SaveImage wrote is copied to
`OUT/<method>/<case>-s<seed>.png`, listed in `OUT/manifest.jsonl` (the format `--outputs` reads).
"""
import hashlib
import shutil
from pathlib import Path

from tqdm import tqdm

from core.evaluation.manifest import MANIFEST_NAME, EvalRow, write_manifest

from .comparison_graphs import method_graph, why_skipped

INPUT_SUBFOLDER = "stylesmith-eval"


class GenerationError(RuntimeError):
    """A method's graph failed in ComfyUI; the message names the method, the case and ComfyUI's error."""


def stage_inputs(spec, input_dir: Path) -> dict:
    """Copy every reference and content image into the server's input folder; {path: LoadImage name}."""
    folder = input_dir / INPUT_SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for path in {p for c in spec.cases for p in (c.reference, c.content) if p is not None}:
        name = hashlib.sha256(path.read_bytes()).hexdigest()[:16] + path.suffix.lower()
        if not (folder / name).is_file():
            shutil.copyfile(path, folder / name)
        names[path] = f"{INPUT_SUBFOLDER}/{name}"
    return names


def generate(spec, server, out_dir: Path) -> tuple[list[EvalRow], list[str]]:
    """Run every runnable (case, method, seed); return the manifest rows and one line per skipped method."""
    out_dir = Path(out_dir)
    object_info = server.object_info()
    image_names = stage_inputs(spec, server.base_dir / "input")
    rows, skipped, jobs = [], [], []
    for case in spec.cases:
        for method in spec.methods:
            reason = why_skipped(method, case, object_info)
            if reason:
                skipped.append(f"{method} skipped for case {case.name!r}: {reason}")
                continue
            jobs += [(case, method, seed) for seed in spec.seeds]
    for line in skipped:
        print(line)
    for case, method, seed in tqdm(jobs, desc="generating in ComfyUI", unit="image"):
        result = server.run(method_graph(method, spec, case, seed, image_names, object_info))
        if result.status != "success" or not result.image_paths:
            detail = result.error.get("exception_message") if isinstance(result.error, dict) else None
            raise GenerationError(f"{method} failed on case {case.name!r}, seed {seed}: "
                                  f"{detail or result.error}. See the ComfyUI log {server.log_path}; fix the spec's "
                                  "model files or drop the method from \"methods\".")
        target = out_dir / method / f"{case.name}-s{seed}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result.image_paths[0], target)
        rows.append(EvalRow(method=method, image=target, prompt=case.prompt, reference=case.reference,
                            content=case.content, seed=seed, case=case.name))
    if not rows:
        raise GenerationError("No method could run for any case:\n" + "\n".join(skipped))
    write_manifest(rows, out_dir / MANIFEST_NAME)
    return rows, skipped
