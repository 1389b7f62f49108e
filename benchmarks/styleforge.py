"""Benchmark: StyleForge LoRA training step vs ComfyUI's own TrainLoraNode, same rank, resolution and precision.

Each side trains once, in a fresh process of its own, under benchmarks.trainer_probe: the probe stamps every
optimiser step inside the training loop (after a CUDA synchronise), so the time per step is the median gap
between steps after warm-up, with no loading, set-up or file writing in it; and each process reports its own
peak memory (VmHWM resident set, CUDA max_memory_allocated). A StyleForge step runs two UNet passes (StyleRef +
Aux), a TrainLoraNode step one (batch 1), so the ratio compares time per UNet pass.

    python -m benchmarks.styleforge                          # tiny SD1.5, 64 px, rank 16, fp32, CPU
    python -m benchmarks.styleforge --full-size --gpu        # full SD1.5 architecture, random weights, 512 px
"""
import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from devkit import paths
from devkit.example_inputs import CONTENT_IMAGE, content_image, style_reference

from .trainer_probe import StepProbe, gib, read_report, write_report

UNET_PASSES_PER_STEP = {"StyleForge": 2, "TrainLoraNode": 1}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture (random weights)")
    p.add_argument("--resolution", type=int, help="pixels (default 64, or 512 with --full-size)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank of both trainers")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps of each side (the first few are warm-up)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="compute dtype of both sides (StyleForge --precision, TrainLoraNode training_dtype); "
                        "LoRA weights are fp32 on both")
    p.add_argument("--gpu", action="store_true", help="train on the GPU")
    p.add_argument("--trainlora-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.full_size else 64)
    if args.steps < 4:
        p.error("--steps must be at least 4: a warm-up, then steps to time")
    return args


def trainlora_graph(args) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": args.checkpoint.name}},
        "2": {"class_type": "LoadImage", "inputs": {"image": CONTENT_IMAGE}},
        "3": {"class_type": "ImageScale", "inputs": {"image": ["2", 0], "upscale_method": "bicubic",
              "width": args.resolution, "height": args.resolution, "crop": "center"}},
        "7": {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}},
        "8": {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["7", 0]}},
        "9": {"class_type": "VAEEncode", "inputs": {"pixels": ["8", 0], "vae": ["1", 2]}},
        # A list of latents: 0.3.75's TrainLoraNode fails on a single LATENT input (unset multi_res).
        "4": {"class_type": "RebatchLatents", "inputs": {"latents": ["9", 0], "batch_size": 1}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of zwx style", "clip": ["1", 1]}},
        "6": {"class_type": "TrainLoraNode", "inputs": {
            "model": ["1", 0], "latents": ["4", 0], "positive": ["5", 0], "batch_size": 1,
            "grad_accumulation_steps": 1, "steps": args.steps, "learning_rate": 1e-4, "rank": args.rank,
            "optimizer": "AdamW", "loss_function": "MSE", "seed": 0, "training_dtype": args.precision,
            "lora_dtype": "fp32", "algorithm": "LoRA", "gradient_checkpointing": False, "existing_lora": "[None]"}},
    }


def trainlora_worker(args) -> None:
    """In the worker process: TrainLoraNode in an in-process ComfyUI, its optimiser steps seen by the probe."""
    from devkit.in_process import InProcessHost
    base = paths.make_base_dir(args.work / "trainlora-base")
    config = paths.write_extra_model_paths(args.work / "models.yaml", {"checkpoints": args.checkpoint.parent})
    host = InProcessHost(base, config, cpu=not args.gpu)
    probe = StepProbe()
    host.run(trainlora_graph(args), outputs_of=("6",))
    write_report(probe.report(), args.work / "trainlora-probe.json")


def run_side(command: list[str], side: str) -> None:
    done = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} failed:\n{done.stderr[-3000:]}")


def styleforge_side(args, checkpoint: Path, work: Path) -> dict:
    report = work / "styleforge-probe.json"
    run_side([sys.executable, "-m", "benchmarks.trainer_probe", "--report", str(report), "trainers.styleforge",
              "--checkpoint", str(checkpoint), "--styleref", str(work / "refs"), "--aux", str(work / "aux"),
              "--output-dir", str(work / "styleforge"), "--resolution", str(args.resolution), "--rank", str(args.rank),
              "--steps", str(args.steps), "--precision", args.precision, "--sample-steps", "0", "--no-resume",
              "--device", "cuda" if args.gpu else "cpu"], "StyleForge")
    return read_report(report)


def trainlora_side(args, checkpoint: Path, work: Path) -> dict:
    run_side([sys.executable, "-m", "benchmarks.styleforge", "--trainlora-worker", "--checkpoint", str(checkpoint),
              "--work", str(work), "--resolution", str(args.resolution), "--rank", str(args.rank),
              "--steps", str(args.steps), "--precision", args.precision] + (["--gpu"] if args.gpu else []),
              "TrainLoraNode")
    return read_report(work / "trainlora-probe.json")


def write_images(work: Path, resolution: int) -> None:
    for folder, make in (("refs", lambda i: style_reference(resolution, seed=i)),
                         ("aux", lambda i: content_image(resolution).rotate(15 * i))):
        (work / folder).mkdir()
        for i in range(3):
            make(i).save(work / folder / f"{i}.png")


def main(args) -> None:
    if args.trainlora_worker:
        trainlora_worker(args)
        return
    with tempfile.TemporaryDirectory(prefix="stylesmith-bench-") as work:
        work = Path(work)
        write_images(work, args.resolution)
        checkpoint = paths.models_dir() / "checkpoints" / "stylesmith-tiny-sd15.safetensors"
        if args.full_size:   # in its own process, so this one stays small
            checkpoint = work / "checkpoints" / "full-sd15.safetensors"
            subprocess.run([sys.executable, "-m", "devkit.tiny_models", "--family", "sd15", "--size", "full", "--out",
                            str(checkpoint), "--text-encoder-dtype", "fp16"], cwd=paths.REPO_ROOT, check=True)
        reports = {"StyleForge": styleforge_side(args, checkpoint, work),
                   "TrainLoraNode": trainlora_side(args, checkpoint, work)}
    for side, report in reports.items():
        if report["optimiser_steps"] != args.steps:
            raise RuntimeError(f"{side} took {report['optimiser_steps']} optimiser steps, not {args.steps}")
    per_pass = {side: r["seconds_per_step"] / UNET_PASSES_PER_STEP[side] for side, r in reports.items()}
    timed = args.steps - 1 - reports["StyleForge"]["warm_up_gaps"]
    print(f"device: {', '.join(sorted({r['device'] for r in reports.values()}))}")
    print(f"{'full-size' if args.full_size else 'tiny'} SD1.5, {args.resolution} px, rank {args.rank}, "
          f"{args.precision}; time per step: median of the last {timed} of {args.steps} steps, measured in each "
          "training loop")
    for side, r in reports.items():
        print(f"  {side:<13} {r['seconds_per_step'] * 1000:8.1f} ms per step = {per_pass[side] * 1000:8.1f} ms per "
              f"UNet pass   peak GPU {gib(r['peak_gpu_gib'])} GiB   peak RSS {gib(r['peak_rss_gib'])} GiB "
              "(its own process)")
    sf, tl = reports["StyleForge"], reports["TrainLoraNode"]
    print(f"  StyleForge / TrainLoraNode time per UNet pass: {per_pass['StyleForge'] / per_pass['TrainLoraNode']:.3f} "
          "(goal <= 1.0)")
    if sf["peak_gpu_gib"] is not None and tl["peak_gpu_gib"] is not None:
        print(f"  StyleForge / TrainLoraNode peak GPU memory: {sf['peak_gpu_gib'] / tl['peak_gpu_gib']:.3f}")
    print(f"  StyleForge / TrainLoraNode peak RSS: {sf['peak_rss_gib'] / tl['peak_rss_gib']:.3f}")


if __name__ == "__main__":
    main(parse_args())
