"""Benchmark: StyleForge LoRA training step vs ComfyUI's own TrainLoraNode, same rank and resolution.

Each side runs in a fresh process twice, with few and with more steps; the difference divided by
the extra steps is the time per optimiser step without loading and set-up. A StyleForge step runs
two UNet passes (StyleRef + Aux), a TrainLoraNode step one (batch 1), so the ratio compares time per
UNet pass. Peak memory is each process's peak RSS (and peak CUDA memory on a GPU).

    python -m benchmarks.styleforge                  # tiny SD1.5, 64 px, rank 16
    python -m benchmarks.styleforge --full-size      # full SD1.5 architecture, random weights, 512 px
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from devkit import paths
from devkit.example_inputs import CONTENT_IMAGE, content_image, style_reference


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture (random weights)")
    p.add_argument("--resolution", type=int, help="pixels (default 64, or 512 with --full-size)")
    p.add_argument("--rank", type=int, default=16, help="LoRA rank of both trainers")
    p.add_argument("--steps", type=int, nargs=2, default=(5, 45), metavar=("FEW", "MORE"), help="the two run lengths")
    p.add_argument("--gpu", action="store_true", help="train on the GPU")
    p.add_argument("--worker", choices=["styleforge", "trainlora"], help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--worker-steps", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.full_size else 64)
    return args


def styleforge_worker(args) -> float:
    from trainers.styleforge import parse_args as trainer_args, train
    started = time.perf_counter()
    train(trainer_args(["--checkpoint", str(args.checkpoint), "--styleref", str(args.work / "refs"),
                        "--aux", str(args.work / "aux"), "--output-dir", str(args.work / f"sf-{args.worker_steps}"),
                        "--resolution", str(args.resolution), "--rank", str(args.rank), "--steps", str(args.worker_steps),
                        "--sample-steps", "0", "--no-resume", "--save-every", "100000",
                        "--device", "cuda" if args.gpu else "cpu"]))
    return time.perf_counter() - started


def trainlora_worker(args) -> float:
    from devkit.in_process import InProcessHost
    base = paths.make_base_dir(args.work / f"base-{args.worker_steps}")
    config = paths.write_extra_model_paths(args.work / "models.yaml", {"checkpoints": args.checkpoint.parent})
    host = InProcessHost(base, config, cpu=not args.gpu)
    graph = {
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
            "grad_accumulation_steps": 1, "steps": args.worker_steps, "learning_rate": 1e-4, "rank": args.rank,
            "optimizer": "AdamW", "loss_function": "MSE", "seed": 0, "training_dtype": "fp32", "lora_dtype": "fp32",
            "algorithm": "LoRA", "gradient_checkpointing": False, "existing_lora": "[None]"}},
    }
    started = time.perf_counter()
    host.run(graph, outputs_of=("6",))
    return time.perf_counter() - started


def run_worker(args, side: str, steps: int, checkpoint: Path, work: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.styleforge", "--worker", side, "--checkpoint", str(checkpoint),
               "--work", str(work), "--worker-steps", str(steps), "--resolution", str(args.resolution),
               "--rank", str(args.rank)] + (["--gpu"] if args.gpu else [])
    done = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{side} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args) -> None:
    if args.worker:
        seconds = styleforge_worker(args) if args.worker == "styleforge" else trainlora_worker(args)
        gpu = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0
        print(json.dumps({"seconds": seconds, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "peak_gpu_mib": gpu}))
        return
    with tempfile.TemporaryDirectory(prefix="stylesmith-bench-") as work:
        work = Path(work)
        for folder, make in (("refs", lambda i: style_reference(args.resolution, seed=i)),
                             ("aux", lambda i: content_image(args.resolution).rotate(15 * i))):
            (work / folder).mkdir()
            for i in range(3):
                make(i).save(work / folder / f"{i}.png")
        checkpoint = paths.models_dir() / "checkpoints" / "stylesmith-tiny-sd15.safetensors"
        if args.full_size:
            from devkit.tiny_models import build_checkpoint
            checkpoint = work / "checkpoints" / "full-sd15.safetensors"
            build_checkpoint(checkpoint, "sd15", "full", text_encoder_dtype="fp16")
        few, more = args.steps
        results = {side: {n: run_worker(args, side, n, checkpoint, work) for n in (few, more)}
                   for side in ("styleforge", "trainlora")}
    passes = {"styleforge": 2, "trainlora": 1}
    per_pass = {side: (r[more]["seconds"] - r[few]["seconds"]) / (more - few) / passes[side] for side, r in results.items()}
    print(f"{'full-size' if args.full_size else 'tiny'} SD1.5, {args.resolution} px, rank {args.rank}, "
          f"{'GPU' if args.gpu else 'CPU'}; per-step time from runs of {few} and {more} steps")
    for side in results:
        print(f"  {side:<10} {per_pass[side] * 1000:8.1f} ms per UNet pass   peak RSS "
              f"{results[side][more]['peak_rss_mib']:.0f} MiB   peak GPU {results[side][more]['peak_gpu_mib']:.0f} MiB")
    print(f"  StyleForge / TrainLoraNode time per UNet pass: {per_pass['styleforge'] / per_pass['trainlora']:.3f} "
          "(goal <= 1.0)")
    print(f"  StyleForge / TrainLoraNode peak RSS: "
          f"{results['styleforge'][more]['peak_rss_mib'] / results['trainlora'][more]['peak_rss_mib']:.3f}")


if __name__ == "__main__":
    main(parse_args())
