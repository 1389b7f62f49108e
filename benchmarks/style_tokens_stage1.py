"""Benchmark: stage-1 inversion throughput (images/min), batched against one image at a time and with 1 and 2
ranks, and peak memory per rank.

Every run inverts the same procedural style set; each rank reports the time of its inversion loop
(model loading excluded), and runs under benchmarks.trainer_probe, which reports that rank's own peak RSS
(VmHWM: not the parent's, which Linux would carry into ru_maxrss) and peak CUDA memory.
Throughput = images / slowest rank's time.
- batching: 1 rank at --batch-size (one text-encoder and one UNet pass per batch) against 1 rank at batch 1;
  goal >= 1.5 on the CPU with the tiny model at batch 8;
- ranks: 2 ranks against 1, both at --batch-size; goal >= 1.8.

    python -m benchmarks.style_tokens_stage1                     # tiny SD1.5, 64 px, both comparisons
    python -m benchmarks.style_tokens_stage1 --compare batching  # only batched / unbatched
    python -m benchmarks.style_tokens_stage1 --full-size         # full SD1.5 architecture, random weights, 512 px
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from core.data.synthetic_styles import write_synthetic_style_set
from devkit import paths

from .trainer_probe import gib, read_report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full-size", action="store_true", help="full SD1.5 architecture (random weights)")
    p.add_argument("--resolution", type=int, help="pixels (default 64, or 512 with --full-size)")
    p.add_argument("--images", type=int, default=16, help="images to invert")
    p.add_argument("--steps", type=int, default=4, help="optimiser steps per batch")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch")
    p.add_argument("--compare", choices=("batching", "ranks", "both"), default="both",
                   help="batched against unbatched, 2 ranks against 1, or both")
    p.add_argument("--gpu", action="store_true", help="one GPU per rank")
    args = p.parse_args(argv)
    args.resolution = args.resolution or (512 if args.full_size else 64)
    return args


def run(args, ranks: int, batch_size: int, checkpoint: Path, manifest: Path, out: Path) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(ranks)] if ranks > 1 else [sys.executable]
    command = [*launcher, "-m", "benchmarks.trainer_probe", "--report", str(out / "probe-r{rank}.json"),
               "trainers.style_tokens.stage1", "--checkpoint", str(checkpoint), "--data", str(manifest),
               "--output-dir", str(out), "--resolution", str(args.resolution), "--steps", str(args.steps),
               "--batch-size", str(batch_size), "--device", "cuda" if args.gpu else "cpu"]
    done = subprocess.run(command, cwd=paths.REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"stage 1 with {ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    reports = [json.loads(p.read_text()) for p in sorted(out.glob("throughput-r*.json"))]
    probes = [read_report(p) for p in sorted(out.glob("probe-r*.json"))]
    images = sum(r["images"] for r in reports)
    gpu = [p["peak_gpu_gib"] for p in probes if p["peak_gpu_gib"] is not None]
    return {"images_per_minute": 60 * images / max(r["seconds"] for r in reports),
            "peak_rss_gib": max(p["peak_rss_gib"] for p in probes), "peak_gpu_gib": max(gpu) if gpu else None,
            "devices": sorted({p["device"] for p in probes})}


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
        results = {"1 rank, batched": run(args, 1, args.batch_size, checkpoint, manifest, work / "one")}
        if args.compare in ("batching", "both"):
            results["1 rank, batch 1"] = run(args, 1, 1, checkpoint, manifest, work / "unbatched")
        if args.compare in ("ranks", "both"):
            results["2 ranks, batched"] = run(args, 2, args.batch_size, checkpoint, manifest, work / "two")
    print(f"{'full-size' if args.full_size else 'tiny'} SD1.5, {args.resolution} px, {args.steps} steps per batch, "
          f"{args.images} images, batch {args.batch_size}")
    for label, result in results.items():
        print(f"  {label}: {result['images_per_minute']:.1f} images/min on {', '.join(result['devices'])}, largest "
              f"peak per rank: RSS {gib(result['peak_rss_gib'])} GiB, GPU {gib(result['peak_gpu_gib'])} GiB")
    batched = results["1 rank, batched"]["images_per_minute"]
    if "1 rank, batch 1" in results:
        print(f"  batched / unbatched throughput: {batched / results['1 rank, batch 1']['images_per_minute']:.2f} "
              f"(goal >= 1.5 on the CPU at batch 8)")
    if "2 ranks, batched" in results:
        print(f"  2-rank / 1-rank throughput: {results['2 ranks, batched']['images_per_minute'] / batched:.2f} "
              f"(goal >= 1.8)")


if __name__ == "__main__":
    main(parse_args())
