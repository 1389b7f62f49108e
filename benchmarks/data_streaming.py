"""Benchmark: does training memory grow with the data set? Stage 2 on 200 and on 2,000 synthetic images.

Every trainer reads its images through a DataLoader, a batch at a time (core/data/image_stream.py), so peak memory
should not follow the number of images: goal, the 2,000-image peak within 1.2x the 200-image peak. Each run is
its own process and reports its own peak RSS; stage 1's tokens are stood in for by random ones (this measures
the data path, not the inversion).

    python -m benchmarks.data_streaming [--small 200 --large 2000 --steps 20]
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from core.data.style_dataset import read_style_dataset
from core.data.synthetic_styles import write_synthetic_style_set
from core.formats.token_shards import write_shard
from devkit import paths

STYLES = 10


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=int, default=200, help="images of the small set")
    p.add_argument("--large", type=int, default=2000, help="images of the large set")
    p.add_argument("--steps", type=int, default=20, help="stage-2 optimiser steps")
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    p.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def write_set(folder: Path, images: int) -> tuple[Path, Path]:
    """A synthetic style set of `images` images and random stand-in stage-1 tokens for all of them."""
    manifest = write_synthetic_style_set(folder / "data", styles=STYLES, contents=-(-images // STYLES), size=64, seed=0)
    examples = read_style_dataset(manifest).examples
    tokens = {"clip_l": torch.randn(len(examples), 8, 768, generator=torch.Generator().manual_seed(0)) * 0.02}
    write_shard(folder / "tokens", 0, 0, tokens, {e.id: {"style": e.style, "caption": e.caption} for e in examples},
                {"stylesmith.family": "sd15", "stylesmith.n_tokens": "8"}, loss_curve=[0.0])
    return manifest, folder / "tokens"


def run_child(argv: list[str]) -> None:
    """In this process: stage 2, then this process's own peak RSS (VmHWM: ru_maxrss would include the parent's,
    inherited through fork) as JSON on the last line of stdout. DataLoader workers each hold a batch or two."""
    from benchmarks.trainer_probe import peak_rss_gib
    from trainers.style_tokens import stage2
    stage2.main(stage2.parse_args(argv))
    print(json.dumps({"peak_rss_mib": peak_rss_gib() * 1024}))


def measure(args, images: int, work: Path) -> dict:
    manifest, tokens = write_set(work / str(images), images)
    argv = ["--data", str(manifest), "--tokens", str(tokens), "--output-dir", str(work / f"out{images}"),
            "--architecture", "StyleSmith-Tiny-ViT-224", "--random-init",
            "--steps", str(args.steps), "--workers", str(args.workers), "--device", "cpu", "--no-resume"]
    done = subprocess.run([sys.executable, "-m", "benchmarks.data_streaming", "--child", *argv], cwd=paths.REPO_ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"stage 2 on {images} images failed:\n{done.stderr[-3000:]}")
    return {"images": len(read_style_dataset(manifest).examples), **json.loads(done.stdout.strip().splitlines()[-1])}


def main(args) -> None:
    if args.child is not None:
        run_child(args.child)
        return
    with tempfile.TemporaryDirectory(prefix="stylesmith-stream-") as work:
        small, large = (measure(args, n, Path(work)) for n in (args.small, args.large))
    held = 3 * 224 ** 2 * 4 / 2**20
    print(f"stage 2, device cpu, tiny ViT at 224 px (the paper's size), {args.steps} steps, {args.workers} workers")
    for run in (small, large):
        print(f"  {run['images']:>5} images: peak RSS {run['peak_rss_mib']:.0f} MiB "
              f"(all images held as tensors would add {run['images'] * held:.0f} MiB)")
    print(f"  large / small peak: {large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main(parse_args())
