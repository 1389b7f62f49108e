"""Default StyleForge LoRAs for the demo workflows, made by the real trainer on the tiny SD1.5 model, and on the tiny
Flux.2 Klein and Z-Image split files where the host supports the family (devkit/tiny_dit_models.py builds those).

Two optimiser steps on procedural images (`example_inputs`): enough to give every layer a non-zero
update and to carry the trigger metadata, in seconds.
"""
import tempfile
from pathlib import Path

from core.formats.safe_files import copy_atomic

from .example_inputs import content_image, style_reference

DEFAULT_LORAS = {
    "stylesmith-tiny-styleforge-sd15.safetensors": [("style", "zwx", "style")],
    "stylesmith-tiny-multistyleforge-sd15.safetensors": [("characters", "zwx", "style"), ("backgrounds", "qwv", "style")],
}
DIT_LORAS = {"stylesmith-tiny-styleforge-klein.safetensors": ("klein", [("style", "zwx", "style")]),
             "stylesmith-tiny-styleforge-zimage.safetensors": ("zimage", [("style", "zwx", "style")])}


def _image_folder(folder: Path, make, count: int) -> Path:
    folder.mkdir(parents=True)
    for i in range(count):
        make(i).save(folder / f"{i}.png")
    return folder


def build_styleforge_lora(path: Path, base: list[str], components: list[tuple[str, str, str]], seed: int) -> None:
    """`base`: the trainer's base-model flags (--checkpoint FILE, or --diffusion-model ... --text-encoder ... --vae ...)."""
    from trainers.styleforge import parse_args, train
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        argv = [*base, "--output-dir", str(work / "out"), "--resolution", "64",
                "--steps", "2", "--lr", "1e-2", "--sample-steps", "0", "--seed", str(seed), "--no-resume",
                "--name", path.stem]
        for index, (name, identifier, class_word) in enumerate(components):
            refs = _image_folder(work / name / "styleref", lambda i: style_reference(64, seed=10 * index + i), 3)
            aux = _image_folder(work / name / "aux", lambda i: content_image(64).rotate(15 * i), 2)
            argv += ["--component", f"name={name},identifier={identifier},class={class_word},styleref={refs},aux={aux}"]
        result = train(parse_args(argv))
        copy_atomic(result.lora_path, path)
