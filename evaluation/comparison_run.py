"""Generate a comparison spec's images through a running ComfyUI and write their manifest.

Each case's reference and content images are uploaded to the server (`input/stylesmith-eval/`, named by
content hash) for LoadImage; every method then runs once per seed, and the PNG that SaveImage wrote is fetched
to `OUT/<method>/<case>-s<seed>.png`, listed in `OUT/manifest.jsonl` (the format `--outputs` reads).
"""
import hashlib
from pathlib import Path

from tqdm import tqdm

from core.evaluation.manifest import MANIFEST_NAME, EvalRow, write_manifest

from .comfy_client import ComfyClient
from .comparison_graphs import method_graph, why_skipped

INPUT_SUBFOLDER = "stylesmith-eval"


class GenerationError(RuntimeError):
    """A method's graph failed in ComfyUI; the message names the method, the case and ComfyUI's error."""


def upload_inputs(spec, client: ComfyClient) -> dict:
    """Upload every reference and content image to the server's input folder; {path: LoadImage name}."""
    names = {}
    for path in {p for c in spec.cases for p in (c.reference, c.content) if p is not None}:
        name = hashlib.sha256(path.read_bytes()).hexdigest()[:16] + path.suffix.lower()
        names[path] = client.upload_image(path, name, INPUT_SUBFOLDER)
    return names


def generate(spec, client: ComfyClient, out_dir: Path) -> tuple[list[EvalRow], list[str]]:
    """Run every runnable (case, method, seed); return the manifest rows and one line per skipped method."""
    out_dir = Path(out_dir)
    object_info = client.object_info()
    image_names = upload_inputs(spec, client)
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
        result = client.run(method_graph(method, spec, case, seed, image_names, object_info))
        if result.status != "success" or not result.image_refs:
            detail = result.error.get("exception_message") if isinstance(result.error, dict) else None
            raise GenerationError(f"{method} failed on case {case.name!r}, seed {seed}: "
                                  f"{detail or result.error}. The console of ComfyUI at {client.url} has the "
                                  "traceback; fix the spec's model files or drop the method from \"methods\".")
        target = out_dir / method / f"{case.name}-s{seed}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.image_bytes(result.image_refs[0]))
        rows.append(EvalRow(method=method, image=target, prompt=case.prompt, reference=case.reference,
                            content=case.content, seed=seed, case=case.name))
    if not rows:
        raise GenerationError("No method could run for any case:\n" + "\n".join(skipped))
    write_manifest(rows, out_dir / MANIFEST_NAME)
    return rows, skipped
