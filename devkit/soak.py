"""Soak run: queue many style prompts through one ComfyUI server and watch its resident memory.

Every prompt is a bundled SD1.5 workflow with its texts and seeds changed, so ComfyUI's cache cannot
answer it and every node runs again. Resident memory is read after a warm-up (every workflow once)
and at the end; the goal is growth below 5%.

    python -m devkit.soak [--prompts 50]
"""
import argparse
import copy
import sys
import time

from . import paths
from .server import ComfyServer
from .workflows import api_workflows

TEXT_INPUTS = ("text", "template")


def variant(api: dict, index: int) -> dict:
    """The workflow with every prompt text and seed made unique to `index`."""
    api = copy.deepcopy(api)
    for node in api.values():
        inputs = node["inputs"]
        for key in TEXT_INPUTS:
            if isinstance(inputs.get(key), str):
                inputs[key] = f"{inputs[key]}, variation {index}"
        if isinstance(inputs.get("seed"), int):
            inputs["seed"] = inputs["seed"] + index
        if isinstance(inputs.get("t0"), float):
            inputs["t0"] = round(0.3 + 0.01 * (index % 40), 2)
    return api


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompts", type=int, default=50, help="prompts to queue, warm-up included (default 50)")
    p.add_argument("--goal", type=float, default=5.0, help="allowed resident-memory growth in percent")
    return p.parse_args(argv)


def main(args) -> int:
    workflows = [api for name, api in api_workflows().items() if name.endswith("-sd15")]
    warm_up = len(workflows)
    if args.prompts <= warm_up:
        raise SystemExit(f"--prompts must exceed the warm-up of {warm_up} (one run per SD1.5 workflow)")
    failures, started = [], time.perf_counter()
    with ComfyServer(paths.base_dir()) as server:
        for index in range(args.prompts):
            result = server.run(variant(workflows[index % len(workflows)], index))
            if result.status != "success":
                failures.append((index, result.error))
            if index + 1 == warm_up:
                after_warm_up = server.rss_bytes()
        at_end = server.rss_bytes()
    growth = 100.0 * (at_end - after_warm_up) / after_warm_up
    print(f"{args.prompts} prompts ({len(workflows)} workflows in turn) in {time.perf_counter() - started:.0f} s, "
          f"{args.prompts - len(failures)} completed")
    print(f"server resident memory: {after_warm_up / 2**20:.0f} MiB after the warm-up of {warm_up}, "
          f"{at_end / 2**20:.0f} MiB at the end: growth {growth:+.1f}% (goal < {args.goal:.0f}%)")
    for index, error in failures:
        print(f"  prompt {index} failed: {error}")
    return 0 if not failures and growth < args.goal else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
