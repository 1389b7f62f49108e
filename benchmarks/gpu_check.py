"""One command for a CUDA machine: every trainer and every bundled workflow on full-size SD1.5 and SDXL, and
with --families klein zimage every trainer on full-size Flux.2 Klein 4B and Z-Image (a device run of its own).

    bash .gpu/env.sh python3 -m benchmarks.gpu_check          # on the lent GPU machine (see docs/development.md)
    python -m benchmarks.gpu_check --tiny --device cpu         # the same code path: tiny models, 64 px, 2 steps
    python -m benchmarks.gpu_check --families klein zimage --precisions bf16    # the DiT families, on their own

The full-size random-weight checkpoints (SD1.5 at 512 px, SDXL at 1024 px; devkit.tiny_models, size "full") are
built once into the work folder and reused by later runs; so are Klein 4B's and Z-Image's split files at their
real architecture sizes, random, in bf16, at 1024 px (devkit.full_size_dit says how; --tiny: the tiny split
files of devkit.tiny_dit_models). Then, one after another, every trainer (style tokens
stages 1-3, StyleForge with and without the text-encoder LoRA, Multi-StyleForge, OSASIS) runs a few steps on each
model at its default precision and at --precision bf16, in its own process under benchmarks.trainer_probe; SDXL,
Klein and Z-Image runs add --gradient-checkpointing where the trainer's --help offers it (Klein and Z-Image
trainers cache the Qwen3-4B outputs themselves; the text-encoder LoRA run is left out there: StyleForge keeps an
LLM encoder frozen, so it would repeat the styleforge run). A run passes when
- the trainer exits 0 on the requested device and every loss it logged is finite;
- its weights moved (each optimiser's parameters at the end differ from those at its first step) and stayed finite;
- its result file (stage 1: the embedding its --export writes) exists and holds only finite tensors;
- that file, loaded by its node in the bundled workflows of its kind made for its family (the first one run also
  without the file; SDXL borrows SD1.5's where it has none of its own, Klein and Z-Image run only their own), gives
  finite images, and changes the image.
Peak GPU memory is set against the issue's goals (MEMORY_GOALS_GIB: StyleForge on Klein 4B and Z-Image, OSASIS) in
the table's "goal" column and in summary.json; a missed goal is reported, not a failed run. (The goal of style-token
sampling against plain sampling is benchmarks.style_tokens' ratio, not measured here.)
Printed: each run's time per optimiser step (median after warm-up, synchronised on CUDA) and peak GPU memory,
measured in the trainer's own process, then one table and the device. The table also goes to WORK/summary.json.
Exit status 1 when anything failed.
"""
import argparse
import json
import math
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from devkit import paths

from . import gpu_check_graphs as graphs
from .trainer_probe import gib
from .gpu_check_trainers import (PRECISIONS, TRAINERS, Run, Setting, check_trainer_run, loss_first_last, offers_flag,
                                 run_trainer, trainer_arguments, with_dependencies, write_inputs)

FULL_RESOLUTION = {"sd15": 512, "sdxl": 1024, "klein": 1024, "zimage": 1024}
SPLIT_FAMILIES = ("klein", "zimage")     # base models as split files (diffusion model, text encoder, VAE)
GRADIENT_CHECKPOINTING = ("sdxl", *SPLIT_FAMILIES)
# (trainer, family) -> the most peak GPU memory the run may take, in GiB (issue 20: 1024 px, gradient checkpointing,
# cached text encoder)
MEMORY_GOALS_GIB = {("styleforge", "klein"): 16, ("styleforge", "zimage"): 24, ("osasis", "klein"): 24,
                    ("osasis", "zimage"): 24}
GOAL_WORDS = {None: "n/a", True: "met", False: "MISSED"}     # n/a: no GPU memory measured (a CPU run)
TINY_RESOLUTION, TINY_STEPS = 64, 2     # --tiny: the default tiny models, at 64 px, 2 steps per run


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="the tiny default models (models/checkpoints) at 64 px")
    p.add_argument("--device", help="torch device of trainers and workflows (default: cuda if available, else cpu)")
    p.add_argument("--only", nargs="+", choices=list(TRAINERS), metavar="TRAINER",
                   help=f"run only these trainers (and those they start from); of {', '.join(TRAINERS)}")
    p.add_argument("--families", nargs="+", choices=list(FULL_RESOLUTION), default=["sd15", "sdxl"],
                   help="base models to train on (default: sd15 sdxl; klein and zimage are a device run of their "
                        "own: with their 15 GiB and 19 GiB of files they do not fit one run beside the SD ones)")
    p.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                   help="default: the trainer's own (no --precision); bf16: --precision bf16")
    p.add_argument("--steps", type=int, help=f"optimiser steps per SD1.5 run (default 20; {TINY_STEPS} with --tiny)")
    p.add_argument("--sdxl-steps", type=int, help="optimiser steps per run at 1024 px: SDXL, Klein, Z-Image "
                                                  "(default 10: at 1024 px a step costs "
                                                  f"about four SD1.5 steps; {TINY_STEPS} with --tiny)")
    p.add_argument("--trainer-args", action="append", default=[], metavar="TRAINER:ARGS",
                   help="extra arguments for one trainer's runs, e.g. --trainer-args 'styleforge:--rank 4'")
    p.add_argument("--work", type=Path, help="work folder; its checkpoints are reused (default: "
                                             "$STYLESMITH_HOME/gpu-check, or gpu-check-tiny with --tiny)")
    args = p.parse_args(argv)
    args.steps = args.steps or (TINY_STEPS if args.tiny else 20)
    args.sdxl_steps = args.sdxl_steps or (TINY_STEPS if args.tiny else 10)
    if min(args.steps, args.sdxl_steps) < 2:
        p.error("--steps and --sdxl-steps must be at least 2 (a time per step needs two steps)")
    extra = {}
    for text in args.trainer_args:
        name, _, arguments = text.partition(":")
        if name not in TRAINERS:
            p.error(f"--trainer-args {text!r}: write TRAINER:ARGS with TRAINER one of {', '.join(TRAINERS)}")
        extra.setdefault(name, []).extend(shlex.split(arguments))
    args.trainer_args = extra
    if args.device is None:
        import torch
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.work = (args.work or paths.state_dir() / ("gpu-check-tiny" if args.tiny else "gpu-check")).resolve()
    return args


def full_size_checkpoint(path: Path, family: str) -> Path:
    """Built once per recipe (in its own process: building configures ComfyUI), reused while the stamp matches."""
    from devkit.tiny_models import BUILDER_VERSION, DEFAULT_SEED, ensure_built
    recipe = {"builder": BUILDER_VERSION, "family": family, "size": "full", "seed": DEFAULT_SEED,
              "text_encoder_dtype": "fp16"}
    return ensure_built(path, recipe, lambda out: subprocess.run(
        [sys.executable, "-m", "devkit.tiny_models", "--family", family, "--size", "full", "--out", str(out),
         "--text-encoder-dtype", "fp16"], cwd=paths.REPO_ROOT, check=True))


def full_size_style_encoder(path: Path, family: str) -> Path:
    """A random ViT-B/32 style encoder (OSASIS's loss encoder in the paper) for OSASIS and the workflows."""
    from devkit.tiny_models import BUILDER_VERSION, DEFAULT_SEED, ensure_built
    from devkit.tiny_style_encoders import build_style_encoder_file
    recipe = {"builder": BUILDER_VERSION, "family": family, "architecture": "ViT-B-32", "seed": DEFAULT_SEED}
    return ensure_built(path, recipe, lambda out: build_style_encoder_file(out, family, DEFAULT_SEED,
                                                                           architecture="ViT-B-32"))


def full_size_split_files(folder: Path, family: str) -> tuple[Path, Path, Path]:
    """Klein 4B's or Z-Image's random split files, built in their own process (building configures ComfyUI)."""
    from devkit.full_size_dit import files
    subprocess.run([sys.executable, "-m", "devkit.full_size_dit", "--family", family, "--out-dir", str(folder)],
                   cwd=paths.REPO_ROOT, check=True)
    return files(folder, family)


def tiny_split_files(family: str) -> tuple[Path, Path, Path]:
    from devkit.tiny_dit_models import SPLIT_MODELS
    spec, models = SPLIT_MODELS[family], paths.models_dir()
    return (models / "diffusion_models" / spec.diffusion_model, models / "text_encoders" / spec.text_encoder,
            models / "vae_approx" / spec.vae)


def setting(args, family: str) -> Setting:
    from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
    steps = args.steps if family == "sd15" else args.sdxl_steps
    split = None
    if args.tiny:
        from devkit.tiny_models import TINY_CHECKPOINTS
        models = paths.models_dir()
        split = tiny_split_files(family) if family in SPLIT_FAMILIES else None
        checkpoint = split[0] if split else models / "checkpoints" / TINY_CHECKPOINTS[family]
        return Setting(family, checkpoint, TINY_RESOLUTION, steps,
                       models / "style_encoders" / DEFAULT_STYLE_ENCODERS[family], split)
    if family in SPLIT_FAMILIES:
        split = full_size_split_files(args.work / "split", family)
    encoder_family = "klein" if family == "zimage" else family     # one qwen3_4b head serves both
    return Setting(family, split[0] if split else full_size_checkpoint(
                       args.work / "checkpoints" / f"full-{family}.safetensors", family),
                   FULL_RESOLUTION[family], steps,
                   full_size_style_encoder(args.work / "style_encoders" / f"vit-b-32-{encoder_family}.safetensors",
                                           encoder_family), split)


def settings(args) -> list[Setting]:
    return [setting(args, family) for family in args.families]


def trains_on(trainer, family: str) -> bool:
    from core.families import get_family
    return trainer.llm_encoders or not any(e.kind == "llm" for e in get_family(family).encoders)


def plan(args, chosen: list[Setting]) -> list[Run]:
    names = with_dependencies(args.only or list(TRAINERS))
    return [Run(TRAINERS[name], setting, precision, args.work / "runs" / f"{name}-{setting.family}-{precision}")
            for setting in chosen for precision in args.precisions for name in names
            if trains_on(TRAINERS[name], setting.family)]


def train_all(args, runs: list[Run]) -> None:
    """Each run in turn, in its own process; a run whose input run failed is not started."""
    resolutions = {r.setting.resolution for r in runs}
    inputs = {size: write_inputs(args.work / f"inputs-{size}", size) for size in resolutions}
    by_name = {r.name: r for r in runs}
    for number, run in enumerate(runs, 1):
        needed = by_name.get(f"{run.trainer.needs}-{run.setting.family}-{run.precision}") if run.trainer.needs else None
        if needed is not None and not needed.ok:
            run.problems.append(f"not run: it starts from {needed.name}, which failed")
            print(f"[{number}/{len(runs)}] {run.name}: FAILED ({run.problems[-1]})", flush=True)
            continue
        run.gradient_checkpointing = (run.setting.family in GRADIENT_CHECKPOINTING and run.trainer.base_model
                                      and offers_flag(run.trainer.module, "--gradient-checkpointing"))
        arguments = trainer_arguments(run, inputs[run.setting.resolution], needed, args.device, args.tiny)
        arguments += args.trainer_args.get(run.trainer.name, [])
        run_trainer(run, arguments, args.work / "runs" / f"{run.name}.log")
        if run.status == "ran":
            check_trainer_run(run)
            if not run.probe["device"].startswith(args.device.split(":")[0]):
                run.problems.append(f"ran on {run.probe['device']}, not {args.device}")
        print(f"[{number}/{len(runs)}] {run.name}: {'ok' if run.ok else 'FAILED'}, "
              f"{run.probe.get('seconds_per_step', math.nan):.3f} s/step, "
              f"peak GPU {gib(run.probe.get('peak_gpu_gib'))} GiB, {run.wall_seconds:.0f} s in all"
              + (f" ({'; '.join(run.problems)})" if run.problems else ""), flush=True)


def loader_files(s: Setting) -> dict[str, str]:
    """{loader input: file name} that point a bundled workflow's loaders at the setting's files."""
    models = ({"unet_name": s.split[0].name, "clip_name": s.split[1].name} if s.split else
              {"ckpt_name": s.checkpoint.name})
    return {**models, "encoder_name": s.style_encoder.name}


def setting_links(s: Setting) -> list[tuple[Path, str]]:
    """(file, models folder) for every file of the setting a workflow loads (split files: the approximate VAE's
    encoder and decoder halves, found by its prefix)."""
    if s.split is None:
        return [(s.checkpoint, "checkpoints"), (s.style_encoder, "style_encoders")]
    diffusion, encoder, vae = s.split
    return [(diffusion, "diffusion_models"), (encoder, "text_encoders"), (s.style_encoder, "style_encoders"),
            *((half, "vae_approx") for half in sorted(vae.parent.glob(f"{vae.name}_*.safetensors")))]


def workflow_host(args, checked: list[Run]):
    """An in-process ComfyUI whose model folders hold the check's base models and style encoders, and every result
    file linked as RUN_NAME.safetensors (unique, and a usable embedding name)."""
    from devkit.in_process import InProcessHost
    host_dir = args.work / "host"
    shutil.rmtree(host_dir, ignore_errors=True)
    base = paths.make_base_dir(host_dir / "base")
    models = {folder: host_dir / "models" / folder
              for folder in ("checkpoints", "diffusion_models", "text_encoders", "vae_approx", "style_encoders",
                             "embeddings", "loras", "osasis")}
    for folder in models.values():
        folder.mkdir(parents=True)
    for setting in {r.setting for r in checked}:
        graphs.write_input_images(base / "input", setting.resolution)
        for path, folder in setting_links(setting):
            if not (models[folder] / path.name).exists():
                (models[folder] / path.name).symlink_to(path)
    for run in checked:
        (models[graphs.FILE_USES[run.trainer.kind].folder] / f"{run.name}.safetensors").symlink_to(run.result_file)
    started = time.perf_counter()
    config = paths.write_extra_model_paths(host_dir / "models.yaml", models)
    host = InProcessHost(base, config, cpu=args.device == "cpu")
    print(f"workflows: ComfyUI up in this process in {time.perf_counter() - started:.0f} s", flush=True)
    return host


def run_workflows(host, run: Run, bundled: dict) -> set[str]:
    """The run's file in each bundled workflow of its kind made for its family (SD1.x's serve SDXL too), the first
    also without it; returns the workflows passed."""
    use, file_name, s = graphs.FILE_USES[run.trainer.kind], f"{run.name}.safetensors", run.setting
    workflows = [name for base in run.trainer.workflows if (name := graphs.workflow_name(base, s.family))]
    passed = set()
    for index, workflow in enumerate(workflows):
        graph = graphs.for_model(bundled[workflow], loader_files(s), s.resolution)
        run.workflows_run += 1
        try:
            if index == 0:
                run.image_change = graphs.image_change(host, graph, use, file_name)
                if not run.image_change > graphs.EFFECT_TOLERANCE:
                    run.problems.append(f"{workflow}: the file does not change the image")
                    continue
            else:
                graphs.run_image(host, use.with_file(graph, file_name))
        except Exception as error:   # a failed graph is this run's failure; the next graph still runs
            run.problems.append(f"{workflow}: {type(error).__name__}: {str(error)[:300]}")
            continue
        run.workflows_ok += 1
        passed.add(workflow)
    return passed


def check_workflows(args, runs: list[Run]) -> set[str]:
    """Every passing run's result file through its workflows, in one ComfyUI; returns the bundled workflows run."""
    from devkit.workflows import api_workflows
    checked = [r for r in runs if r.ok]
    if not checked:
        return set()
    host, bundled, ran = workflow_host(args, checked), api_workflows(), set()
    for run in checked:
        started = time.perf_counter()
        ran |= run_workflows(host, run, bundled)
        print(f"  {run.name}: {run.workflows_ok}/{run.workflows_run} workflows, image change {run.image_change:.2e}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return ran


COLUMNS = ("run", "status", "s/step", "GPU GiB", "RSS GiB", "process s", "loss first->last", "weights moved",
           "image change", "workflows", "grad ckpt", "goal")


def memory_goal(run: Run) -> tuple[float | None, bool | None]:
    """The run's peak-GPU-memory goal in GiB and whether it was met (None: no goal, or not measured)."""
    goal = MEMORY_GOALS_GIB.get((run.trainer.name, run.setting.family))
    peak = run.probe.get("peak_gpu_gib")
    return goal, None if goal is None or peak is None else peak <= goal


def goal_cell(run: Run) -> str:
    goal, met = memory_goal(run)
    return "-" if goal is None else f"<={goal}:{GOAL_WORDS[met]}"


def table_rows(runs: list[Run]) -> list[tuple]:
    rows = []
    for r in runs:
        first, last = loss_first_last(r)
        rows.append((r.name, "ok" if r.ok else "FAILED", f"{r.probe.get('seconds_per_step', math.nan):.3f}",
                     gib(r.probe.get("peak_gpu_gib")), gib(r.probe.get("peak_rss_gib")), f"{r.wall_seconds:.0f}",
                     f"{first:.4g}->{last:.4g}",
                     f"{r.probe.get('smallest_max_change', math.nan):.2e}", f"{r.image_change:.2e}",
                     f"{r.workflows_ok}/{r.workflows_run}", "yes" if r.gradient_checkpointing else "no",
                     goal_cell(r)))
    return rows


def print_table(runs: list[Run]) -> None:
    rows = [COLUMNS, *table_rows(runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    for r in runs:
        for problem in r.problems:
            print(f"  {r.name}: {problem}")


def summary(args, runs: list[Run], workflows_ran: set[str], seconds: float) -> dict:
    from devkit.workflows import api_workflows
    return {"devices": sorted({r.probe["device"] for r in runs if r.probe}), "tiny": args.tiny, "seconds": seconds,
            "workflows_run": sorted(workflows_ran), "workflows_not_run": sorted(set(api_workflows()) - workflows_ran),
            "runs": [{"run": r.name, "ok": r.ok, "problems": r.problems, "resolution": r.setting.resolution,
                      "steps": r.setting.steps, "gradient_checkpointing": r.gradient_checkpointing,
                      "process_seconds": r.wall_seconds, **r.probe,
                      "loss_first_last": loss_first_last(r), "image_change": r.image_change,
                      "workflows_ok": r.workflows_ok, "workflows_run": r.workflows_run,
                      "memory_goal_gib": memory_goal(r)[0], "memory_goal_met": memory_goal(r)[1]} for r in runs]}


def main(args) -> int:
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"gpu_check: {'tiny' if args.tiny else 'full-size'} models, device {args.device}, work folder {args.work}",
          flush=True)
    runs = plan(args, settings(args))
    train_all(args, runs)
    workflows_ran = check_workflows(args, runs)
    seconds = time.perf_counter() - started
    report = summary(args, runs, workflows_ran, seconds)
    (args.work / "summary.json").write_text(json.dumps(report, indent=1))
    print_table(runs)
    print(f"device: {', '.join(report['devices']) or 'none (no trainer ran)'}")
    print(f"bundled workflows run: {len(workflows_ran)}; not run: {', '.join(report['workflows_not_run']) or 'none'}")
    missed = [r.name for r in runs if memory_goal(r)[1] is False]
    if missed:
        print(f"peak GPU memory over its goal: {', '.join(missed)}")
    failed = [r.name for r in runs if not r.ok]
    print(f"{len(runs) - len(failed)}/{len(runs)} runs passed in {seconds:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
