"""The main job: run the bundled workflows headless in the real ComfyUI and say where the images went.

By default every workflow runs on the embedded tiny models. With --checkpoint, the workflows of
that checkpoint's family run on it instead (the others are skipped and say so).

    python -m devkit.run_workflows [--checkpoint /path/to/model.safetensors] [--only NAME ...]
"""
import argparse
import json
import sys
import time
from pathlib import Path

from core.formats.checkpoint_family import checkpoint_family

from . import paths
from .server import ComfyServer
from .tiny_models import TINY_CHECKPOINTS
from .workflows import api_workflows

def workflow_families(api: dict) -> set[str]:
    tiny_to_family = {v: k for k, v in TINY_CHECKPOINTS.items()}
    return {tiny_to_family[n["inputs"]["ckpt_name"]] for n in api.values()
            if n["class_type"] == "CheckpointLoaderSimple" and n["inputs"].get("ckpt_name") in tiny_to_family}


def use_checkpoint(api: dict, family: str, file_name: str) -> dict:
    """A copy of the workflow whose tiny `family` checkpoint loaders load `file_name` instead."""
    api = json.loads(json.dumps(api))
    for node in api.values():
        if node["class_type"] == "CheckpointLoaderSimple" and node["inputs"].get("ckpt_name") == TINY_CHECKPOINTS[family]:
            node["inputs"]["ckpt_name"] = file_name
    return api


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="a real SD1.x or SDXL .safetensors checkpoint to run on")
    p.add_argument("--only", nargs="+", metavar="NAME", help="run only these workflows (names in workflows/api)")
    args = p.parse_args(argv)
    if args.only:
        unknown = sorted(set(args.only) - set(api_workflows()))
        if unknown:
            p.error(f"--only names unknown workflows {unknown}; known: {sorted(api_workflows())}")
    return args


def main(args) -> int:
    workflows = api_workflows()
    if args.only:
        workflows = {k: v for k, v in workflows.items() if k in args.only}
    extra_paths, family = None, None
    if args.checkpoint:
        checkpoint = args.checkpoint.resolve()
        family = checkpoint_family(checkpoint)
        extra_paths = paths.write_extra_model_paths(paths.state_dir() / "user-checkpoint-paths.yaml",
                                                    {"checkpoints": checkpoint.parent})
    failures = 0
    with ComfyServer(paths.base_dir(), extra_args=(), extra_model_paths=extra_paths) as server:
        print(f"ComfyUI is up at {server.url} (log: {server.log_path})")
        for name, api in workflows.items():
            if family is not None:
                if family not in workflow_families(api):
                    print(f"- {name}: skipped (made for {sorted(workflow_families(api))}, the checkpoint is {family})")
                    continue
                api = use_checkpoint(api, family, checkpoint.name)
            started = time.perf_counter()
            result = server.run(api)
            seconds = time.perf_counter() - started
            if result.status != "success":
                failures += 1
                print(f"- {name}: FAILED after {seconds:.1f} s: {json.dumps(result.error, indent=1)[:2000]}")
                continue
            print(f"- {name}: {len(result.image_paths)} image(s) in {seconds:.1f} s")
            for image_path in result.image_paths:
                print(f"    {image_path}")
    print(f"Images are in {paths.base_dir() / 'output' / 'StyleSmith'}" if not failures
          else f"{failures} workflow(s) failed; see above and the ComfyUI log.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
