"""The default OSASIS styles for the demo workflows, made by the real trainer on the tiny models: SD1.5's from its
checkpoint, Flux.2 Klein's and Z-Image's from their split files (built only where the host runs the family,
`ensure_dit_osasis_styles`).

Two iterations on the procedural style reference and content image (`example_inputs`), with the family's tiny style
encoder for z_sem and the losses, on the schedule the bundled osasis-stylise workflows decode with (t0 0.5 of 10
normal steps, so OSASIS Decode has no schedule to warn about): enough for a non-zero LoRA and SPN. Each step of
Z-Image's 0.9B model takes seconds on the CPU, so its style trains on t0 0.5 of 2 steps (one reverse step per
iteration), with one one-step SDEdit candidate for the photoreal counterpart.
"""
import json
import tempfile
from pathlib import Path

from core.formats.safe_files import copy_atomic

from .example_inputs import content_image, style_reference

DEFAULT_OSASIS_STYLES = {"sd15": "stylesmith-tiny-osasis-sd15.safetensors",
                         "klein": "stylesmith-tiny-osasis-klein.safetensors",
                         "zimage": "stylesmith-tiny-osasis-zimage.safetensors"}
TRAINING = {"resolution": 64, "ddim_steps": 10, "iterations": 2, "lr": 1e-3}
# Z-Image's 2 iterations at 1e-3 moved its one-step workflow's image by 0.06 grey levels without the LoRA (the
# workflow test requires 0.5): its style trains at 3e-2.
FAMILY_TRAINING = {"klein": TRAINING, "zimage": dict(TRAINING, ddim_steps=2, lr=3e-2)}
EXTRA_ARGV = {"klein": [], "zimage": ["--sampler-steps", "2", "--sdedit-candidates", "1"]}


def build_osasis_style(path: Path, model_argv: list[str], style_encoder: Path, seed: int,
                       training: dict = TRAINING, extra_argv: list[str] = ()) -> None:
    """Train a style on the model `model_argv` names (--checkpoint, or a DiT's --diffusion-model, --text-encoder and
    --vae) and write it to `path`; `extra_argv` overrides the trainer options set here."""
    from trainers.osasis.train import parse_args, train
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        style_reference(64, seed=seed).save(work / "style.png")
        (work / "content").mkdir()
        content_image(64).save(work / "content" / "0.png")
        result = train(parse_args(model_argv + [
            "--style", str(work / "style.png"), "--content", str(work / "content"),
            "--style-encoder", str(style_encoder), "--output-dir", str(work / "out"), "--name", path.stem,
            "--resolution", str(training["resolution"]), "--ddim-steps", str(training["ddim_steps"]),
            "--steps", str(training["iterations"]), "--lr", str(training["lr"]), "--spn-lr", str(training["lr"]),
            "--sampler-steps", "4", "--sdedit-candidates", "2", "--batch-size", "1", "--save-dtype", "fp32",
            "--workers", "0", "--seed", str(seed), "--no-resume", *extra_argv]))
        copy_atomic(result.style_path, path)


def _sha256(path: Path) -> str:
    return json.loads(path.with_name(path.name + ".stamp.json").read_text())["sha256"]


def ensure_dit_osasis_styles(models_dir: Path, host_version: tuple, seed: int) -> list[Path]:
    """Build Klein's and Z-Image's default OSASIS styles from their tiny split files unless identical builds are
    there; skipped (with the reason) where the host cannot run the family's tiny files or its osasis-stylise
    workflow (the trainer's semantic code needs what that workflow needs: style tokens through the family's encoder)."""
    from .tiny_dit_models import unsupported_here
    from .workflows import unsupported_workflow
    built = []
    for family in ("klein", "zimage"):
        reason = unsupported_here(family, host_version) or unsupported_workflow(f"osasis-stylise-{family}",
                                                                                host_version)
        if reason is not None:
            print(f"[tiny_models] no tiny {family} OSASIS style: {reason}", flush=True)
        else:
            built.append(ensure_dit_osasis_style(models_dir, family, seed))
    return built


def ensure_dit_osasis_style(models_dir: Path, family: str, seed: int) -> Path:
    from .tiny_dit_models import SPLIT_MODELS
    from .tiny_models import BUILDER_VERSION, ensure_built
    from .tiny_style_encoders import DEFAULT_STYLE_ENCODERS
    spec = SPLIT_MODELS[family]
    files = {"--diffusion-model": models_dir / "diffusion_models" / spec.diffusion_model,
             "--text-encoder": models_dir / "text_encoders" / spec.text_encoder,
             "--vae": models_dir / "vae_approx" / spec.vae}
    stamped = dict(files, **{"--vae": models_dir / "vae_approx" / f"{spec.vae}_decoder.safetensors"})
    encoder = models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS[family]
    training = FAMILY_TRAINING[family]
    recipe = {"builder": BUILDER_VERSION, "seed": seed, "training": training, "style_encoder_sha256": _sha256(encoder),
              "model_sha256": {flag: _sha256(path) for flag, path in stamped.items()}}
    if EXTRA_ARGV[family]:
        recipe["argv"] = EXTRA_ARGV[family]
    model_argv = [part for flag, path in files.items() for part in (flag, str(path))]
    return ensure_built(models_dir / "osasis" / DEFAULT_OSASIS_STYLES[family], recipe,
                        lambda p: build_osasis_style(p, model_argv, encoder, seed, training, EXTRA_ARGV[family]))
