"""Each bundled workflow also as a PNG that carries it: drop one on ComfyUI's canvas and the graph loads.

The PNGs are the images ComfyUI itself saves when it runs the workflow's API twin queued with the UI
graph (as the frontend queues it), so they carry the `workflow` (UI) and `prompt` (API) text chunks
exactly as ComfyUI writes them. Made on the tiny models:

    python -m devkit.generate      # writes workflows/png/<name>.png (and the other generated files)
"""
import json
import shutil
from pathlib import Path

from PIL import Image

from .workflows import WORKFLOWS_DIR, api_workflows, ui_workflows

PNG_DIR = WORKFLOWS_DIR / "png"


def embedded_graphs(path: Path) -> tuple[dict, dict]:
    """(UI workflow, API prompt) from the text chunks of a PNG that ComfyUI saved."""
    with Image.open(path) as image:
        chunks = dict(image.text)
    return json.loads(chunks["workflow"]), json.loads(chunks["prompt"])


def generate(server, folder: Path = PNG_DIR) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, api in api_workflows().items():
        result = server.run(api, workflow=ui_workflows()[name])
        if result.status != "success" or not result.image_paths:
            raise RuntimeError(f"{name} did not run: {result.error}")
        shutil.copyfile(result.image_paths[0], folder / f"{name}.png")
        written.append(folder / f"{name}.png")
    return written
