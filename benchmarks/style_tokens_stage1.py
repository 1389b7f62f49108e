"""Benchmark: stage-1 inversion throughput (images/min) with 1 and 2 ranks, and peak memory per rank.

Both runs invert the same procedural style set; each rank reports the time of its inversion loop
(model loading excluded) and its peak RSS. Throughput = images / slowest rank's time.

    python -m benchmarks.style_tokens_stage1                # tiny SD1.5, 64 px
    python -m benchmarks.style_tokens_stage1 --full-size    # full SD1.5 architecture, random weights, 512 px
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from core.synthetic_styles import write_synthetic_style_set
from devkit import paths


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture (random weights)")
    p.add_argument("--resolution", type=int, help="pixels (default 64, or 512 with --full-size)")
    p.add_argument("--images", type=int, default=16, help="images to invert")
    p.add_argument("--steps", type=int, default=4, help="optimiser steps per batch")
    p.add_argument("--batch-size", type=int, default=4, help="images per batch")
    p.add_argument("--gpu", action="store_true", help="one GPU per rank")
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.full_size else 64)
    return args


def run(args, ranks: int, checkpoint: Path, manifest: Path, out: Path) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)] if ranks > 1 else [sys.executable]
    command = [*launcher, "-m", "trainers.style_tokens_stage1", "--checkpoint", str(checkpoint), "--data", str(manifest),
               "--output-dir", str(out), "--resolution", str(args.resolution), "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--device", "cuda" if args.gpu else "cpu"]
    done = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"stage 1 with {ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("throughput-r*.json"))]
    images = sum(r["images"] for r in reports)
    return {"images_per_minute": 60 * images / max(r["seconds"] for r in reports),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in reports)}


def main(args) -> None:
    with tempfile.TemporaryDirectory(prefix="stylesmith-bench-") as work:
        work = Path(work)
        styles = max(2, args.images // 4)
        manifest = write_synthetic_style_set(work / "data", styles=styles, contents=-(-args.images // styles),
                                             size=args.resolution, seed=0)
        checkpoint = paths.models_dir() / "checkpoints" / "stylesmith-tiny-sd15.safetensors"
        if args.full_size:
            from devkit.tiny_models import build_checkpoint
            checkpoint = work / "full-sd15.safetensors"
            build_checkpoint(checkpoint, "sd15", "full", text_encoder_dtype="fp16")
        one = run(args, 1, checkpoint, manifest, work / "one")
        two = run(args, 2, checkpoint, manifest, work / "two")
    print(f"{'full-size' if args.full_size else 'tiny'} SD1.5, {args.resolution} px, {args.steps} steps per batch of "
          f"{args.batch_size}, {'GPU' if args.gpu else 'CPU'}")
    print(f"  1 rank : {one['images_per_minute']:.1f} images/min, peak RSS {one['peak_rss_mib']:.0f} MiB")
    print(f"  2 ranks: {two['images_per_minute']:.1f} images/min, peak RSS per rank {two['peak_rss_mib']:.0f} MiB")
    print(f"  2-rank / 1-rank throughput: {two['images_per_minute'] / one['images_per_minute']:.2f} (goal >= 1.8)")


if __name__ == "__main__":
    main(parse_args())
