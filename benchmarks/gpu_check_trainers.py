"""The trainer runs of `benchmarks.gpu_check`: what each trainer is given, what it must write, how its losses are read.

Every run is one trainer on one base model (a Setting) at one precision, started in its own process under
`benchmarks.trainer_probe`, which measures its steps from outside. Stage 2 starts from stage 1's tokens and stage 3
from stage 2's encoder, as a user would run them; the others need nothing but the procedural images here.
"""
import contextlib
import io
import importlib
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.data.synthetic_styles import write_synthetic_style_set
from devkit import paths
from devkit.example_inputs import content_image, style_reference

PRECISIONS = ("default", "bf16")     # default: the trainer's own (auto), no --precision flag


@dataclass(frozen=True)
class Setting:
    """A base model the check trains on, at its native resolution."""
    family: str
    checkpoint: Path                 # the single-file checkpoint, or the diffusion model of split files
    resolution: int
    steps: int                       # optimiser steps per run
    style_encoder: Path              # z_sem and loss encoder of OSASIS, and of the workflows' semantic encodes
    split: tuple[Path, Path, Path] | None = None    # diffusion model, text encoder, VAE (Flux.2 Klein, Z-Image)

    def base_arguments(self) -> list[str]:
        """The trainer flags that name this base model."""
        if self.split is None:
            return ["--checkpoint", str(self.checkpoint)]
        model, encoder, vae = self.split
        return ["--diffusion-model", str(model), "--text-encoder", str(encoder), "--vae", str(vae)]


@dataclass(frozen=True)
class Inputs:
    """Procedural training images at one resolution."""
    style_set: Path                  # manifest of two synthetic style images
    styleref: Path
    aux: Path
    style: Path
    style_photo: Path
    content: Path


def write_inputs(folder: Path, resolution: int) -> Inputs:
    """The images every trainer needs, drawn by code (no downloads); kept when already there."""
    inputs = Inputs(folder / "styles" / "manifest.jsonl", folder / "styleref", folder / "aux", folder / "style.png",
                    folder / "style-photo.png", folder / "content")
    if not inputs.style_set.is_file():
        write_synthetic_style_set(inputs.style_set.parent, styles=2, contents=1, size=resolution, seed=0)
    for directory, make in ((inputs.styleref, lambda i: style_reference(resolution, seed=i)),
                            (inputs.aux, lambda i: content_image(resolution).rotate(15 * i)),
                            (inputs.content, lambda i: content_image(resolution).rotate(-10 * i))):
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(2 if directory != inputs.content else 1):
            if not (directory / f"{i}.png").is_file():
                make(i).save(directory / f"{i}.png")
    for path, make in ((inputs.style, lambda: style_reference(resolution, seed=7)),
                       (inputs.style_photo, lambda: content_image(resolution))):
        if not path.is_file():
            make().save(path)
    return inputs


def stage1_data(inputs: Inputs, s: Setting, needed: "Run | None", tiny: bool) -> list[str]:
    return ["--data", str(inputs.style_set), "--resolution", str(s.resolution), "--batch-size", "2",
            "--sample-steps", "0"]


def stage2_data(inputs: Inputs, s: Setting, needed: "Run", tiny: bool) -> list[str]:
    backbone = ["--architecture", "StyleSmith-Tiny-ViT"] if tiny else []     # full size: its default ViT-L/14
    # No pretrained CLIP weights here (none are downloaded): random init, where the trainer asks to be told so.
    random_init = ["--random-init"] if offers_flag("trainers.style_tokens.stage2", "--random-init") else []
    return ["--data", str(inputs.style_set), "--tokens", str(needed.output_dir), *backbone, *random_init]


def stage3_data(inputs: Inputs, s: Setting, needed: "Run", tiny: bool) -> list[str]:
    return ["--data", str(inputs.style_set), "--encoder", str(needed.result_file), "--resolution", str(s.resolution),
            "--batch-size", "2", "--sample-steps", "0"]


def styleforge_data(inputs: Inputs, s: Setting, needed: "Run | None", tiny: bool) -> list[str]:
    return ["--styleref", str(inputs.styleref), "--aux", str(inputs.aux), "--resolution", str(s.resolution),
            "--sample-steps", "0"]


def multistyleforge_data(inputs: Inputs, s: Setting, needed: "Run | None", tiny: bool) -> list[str]:
    components = [arg for name, identifier in (("characters", "zwx"), ("backgrounds", "qwv")) for arg in (
        "--component", f"name={name},identifier={identifier},class=style,styleref={inputs.styleref},aux={inputs.aux}")]
    return [*components, "--resolution", str(s.resolution), "--sample-steps", "0"]


def osasis_data(inputs: Inputs, s: Setting, needed: "Run | None", tiny: bool) -> list[str]:
    # Two iterations (Trainer.steps) of a schedule of `steps` steps: t0 = 0.5 gives steps / 2 reverse steps per
    # iteration, each an optimiser step, so `steps` optimiser steps in all, like the other trainers.
    return ["--ddim-steps", str(s.steps), "--style", str(inputs.style), "--style-photo", str(inputs.style_photo),
            "--content", str(inputs.content), "--style-encoder", str(s.style_encoder),
            "--resolution", str(s.resolution)]


@dataclass(frozen=True)
class Trainer:
    name: str
    module: str
    data: Callable[[Inputs, Setting, "Run | None", bool], list[str]]   # its arguments beyond the common ones
    result: str                      # the file in OUTPUT_DIR that a node loads (stage 1: its --export of one image)
    kind: str                        # which node loads the result: embedding, style_encoder, lora, osasis
    workflows: tuple[str, ...]       # bundled workflows (family suffix left off) that load the result; the first is
                                     # also run without it, to see that the result changes the image
    needs: str | None = None         # the trainer whose output this one starts from
    extra: tuple[str, ...] = ()      # fixed arguments of this variant
    base_model: bool = True          # loads the checkpoint (so --gradient-checkpointing may apply)
    steps: int | None = None         # its --steps, where that counts something else than optimiser steps
    llm_encoders: bool = True        # runs on families whose text encoder is an LLM (Klein, Z-Image)


TRAINERS = {t.name: t for t in (
    Trainer("stage1", "trainers.style_tokens.stage1", stage1_data, "embedding.safetensors", "embedding",
            ("style-tokens",)),
    Trainer("stage2", "trainers.style_tokens.stage2", stage2_data, "style_encoder.safetensors", "style_encoder",
            ("style-tokens", "style-tokens-dual-guidance"), needs="stage1", base_model=False),
    Trainer("stage3", "trainers.style_tokens.stage3", stage3_data, "style_encoder.safetensors", "style_encoder",
            ("style-tokens", "style-tokens-dual-guidance"), needs="stage2"),
    Trainer("styleforge", "trainers.styleforge", styleforge_data, "styleforge.safetensors", "lora", ("styleforge",),
            extra=("--no-train-text-encoder",)),
    Trainer("styleforge-te", "trainers.styleforge", styleforge_data, "styleforge.safetensors", "lora", ("styleforge",),
            extra=(), llm_encoders=False),     # an LLM encoder stays frozen: it would repeat styleforge
    Trainer("multistyleforge", "trainers.styleforge", multistyleforge_data, "styleforge.safetensors", "lora",
            ("multistyleforge",)),
    Trainer("osasis", "trainers.osasis.train", osasis_data, "osasis_style.safetensors", "osasis",
            ("osasis-stylise", "osasis-mixing-sweep", "osasis-text-manipulation"), steps=2),
)}


def with_dependencies(names: list[str]) -> list[str]:
    """`names` plus every trainer they start from, in TRAINERS order."""
    wanted = set(names)
    for name in names:
        while TRAINERS[name].needs:
            name = TRAINERS[name].needs
            wanted.add(name)
    return [n for n in TRAINERS if n in wanted]


@dataclass
class Run:
    trainer: Trainer
    setting: Setting
    precision: str
    output_dir: Path
    status: str = "not run"
    problems: list[str] = field(default_factory=list)
    probe: dict = field(default_factory=dict)
    losses: dict[str, list[float]] = field(default_factory=dict)
    result_file: Path | None = None
    gradient_checkpointing: bool = False
    wall_seconds: float = math.nan   # the whole trainer process: start-up, loading, training, writing
    image_change: float = math.nan
    workflows_ok: int = 0
    workflows_run: int = 0

    @property
    def name(self) -> str:
        return f"{self.trainer.name}-{self.setting.family}-{self.precision}"

    @property
    def ok(self) -> bool:
        return self.status == "ran" and not self.problems


def offers_flag(module: str, flag: str) -> bool:
    """Whether the trainer's --help lists `flag` (flags arrive in trainers at different times)."""
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
        importlib.import_module(module).parse_args(["--help"])
    return flag in shown.getvalue()


def trainer_arguments(run: Run, inputs: Inputs, needed: "Run | None", device: str, tiny: bool) -> list[str]:
    """The command line of one run: few steps, no preview pictures, fresh output."""
    t, s = run.trainer, run.setting
    return [*(s.base_arguments() if t.base_model else []),
            "--output-dir", str(run.output_dir), "--steps", str(t.steps or s.steps), "--device", device, "--no-resume",
            *(["--precision", run.precision] if run.precision != "default" else []),
            *(["--gradient-checkpointing"] if run.gradient_checkpointing else []),
            *t.extra, *t.data(inputs, s, needed, tiny)]


def run_trainer(run: Run, arguments: list[str], log: Path) -> None:
    """Start the trainer under the probe; fill run.probe, or run.problems with the end of its log."""
    shutil.rmtree(run.output_dir, ignore_errors=True)
    run.output_dir.mkdir(parents=True)
    report = run.output_dir / "probe.json"
    command = [sys.executable, "-m", "benchmarks.trainer_probe", "--report", str(report), run.trainer.module,
               *arguments]
    started = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, cwd=paths.REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    run.wall_seconds = time.perf_counter() - started
    if done.returncode != 0 or not report.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        run.status = "failed"
        run.problems.append(f"exit code {done.returncode} (log: {log}): "
                            + " | ".join(line.strip()[-200:] for line in tail))
        return
    run.status = "ran"
    run.probe = json.loads(report.read_text())


def logged_losses(run: Run) -> dict[str, list[float]]:
    """Every loss the trainer logged: stage 1's per-batch curves, the others' history in checkpoint.pt."""
    if run.trainer.name == "stage1":
        from core.formats.token_shards import read_loss_curves
        return read_loss_curves(run.output_dir)
    import torch
    checkpoint = run.output_dir / "checkpoint.pt"
    if not checkpoint.is_file():
        return {}
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return {name: [value for _, value in points] for name, points in json.loads(state["history"]).items()}


def export_stage1_embedding(run: Run, to: Path) -> Path:
    """Stage 1's tokens of its first image, as the ComfyUI embedding its --export writes."""
    from core.formats.token_shards import read_index
    from trainers.style_tokens import stage1
    first = sorted(read_index(run.output_dir))[0]
    with contextlib.redirect_stdout(io.StringIO()):    # its "use it as embedding:NAME" names the file, not our link
        stage1.main(stage1.parse_args(["--output-dir", str(run.output_dir), "--export", first, "--to", str(to)]))
    return to


def all_finite(path: Path) -> bool:
    import torch
    from safetensors.torch import load_file
    return all(bool(torch.isfinite(t.float()).all()) for t in load_file(str(path)).values() if t.is_floating_point())


def check_trainer_run(run: Run) -> None:
    """Finite losses, weights that moved and stayed finite, a finite result file: each failure is a problem."""
    run.losses = logged_losses(run)
    values = [v for series in run.losses.values() for v in series]
    if not values:
        run.problems.append("no loss history written")
    elif not all(math.isfinite(v) for v in values):
        run.problems.append("non-finite loss")
    if run.probe.get("optimiser_steps", 0) < 1:
        run.problems.append("no optimiser step taken")
    elif not run.probe["weights_finite"]:
        run.problems.append("non-finite weights")
    elif not run.probe["smallest_max_change"] > 0:
        run.problems.append("weights did not move")
    result = run.output_dir / run.trainer.result
    if run.trainer.name == "stage1" and values:
        export_stage1_embedding(run, result)
    if not result.is_file():
        run.problems.append(f"missing {run.trainer.result}")
    elif not all_finite(result):
        run.problems.append(f"non-finite tensors in {run.trainer.result}")
    else:
        run.result_file = result


def loss_first_last(run: Run) -> tuple[float, float]:
    """The mean over logged loss terms (and stage-1 batches) at the first and at the last logged step."""
    series = [s for s in run.losses.values() if s]
    if not series:
        return math.nan, math.nan
    return sum(s[0] for s in series) / len(series), sum(s[-1] for s in series) / len(series)
