"""The default OSASIS style for the demo workflows, made by the real trainer on the tiny SD1.5 model.

Two iterations on the procedural style reference and content image (`example_inputs`), with the
tiny style encoder for z_sem and the losses: enough for a non-zero LoRA and SPN, in seconds.
"""
import tempfile
from pathlib import Path

from core.formats.safe_files import copy_atomic

from .example_inputs import content_image, style_reference

DEFAULT_OSASIS_STYLES = {"sd15": "stylesmith-tiny-osasis-sd15.safetensors"}
TRAINING = {"resolution": 64, "ddim_steps": 10, "iterations": 2, "lr": 1e-3}


def build_osasis_style(path: Path, checkpoint: Path, style_encoder: Path, seed: int) -> None:
    from trainers.osasis.train import parse_args, train
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        style_reference(64, seed=seed).save(work / "style.png")
        (work / "content").mkdir()
        content_image(64).save(work / "content" / "0.png")
        result = train(parse_args([
            "--checkpoint", str(checkpoint), "--style", str(work / "style.png"), "--content", str(work / "content"),
            "--style-encoder", str(style_encoder), "--output-dir", str(work / "out"), "--name", path.stem,
            "--resolution", str(TRAINING["resolution"]), "--ddim-steps", str(TRAINING["ddim_steps"]),
            "--steps", str(TRAINING["iterations"]), "--lr", str(TRAINING["lr"]), "--spn-lr", str(TRAINING["lr"]),
            "--sampler-steps", "4", "--sdedit-candidates", "2", "--batch-size", "1", "--save-dtype", "fp32",
            "--seed", str(seed), "--no-resume"]))
        copy_atomic(result.style_path, path)
