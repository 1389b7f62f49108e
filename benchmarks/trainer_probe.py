"""Measure training code from outside it: run a trainer in this process and report what its steps cost.

Global optimiser-step hooks (`torch.optim.optimizer.register_optimizer_step_pre_hook` / `_post_hook`) see every
optimiser step of any code in the process, our trainers and ComfyUI's TrainLoraNode alike, so nothing under
measurement needs to know about it:
- time per step: the hook stamps the end of each step (after a CUDA synchronise); the time per step is the median
  gap between consecutive stamps once WARM_UP_GAPS gaps have passed (first-step allocations, cuDNN autotuning).
  Loading, data preparation and the files written at the end lie outside every gap;
- weights moved: each optimiser's parameters are copied at its first step and compared with their values at the end;
- peak memory of this process: CUDA `max_memory_allocated`, and the resident-set high-water mark VmHWM. Not
  `ru_maxrss`: Linux carries the parent's peak across fork and exec into it, so a worker started by a big process
  would report the parent's memory.
With --gradients, the gradients each optimiser is about to apply at each of its first --gradient-steps steps (after
any cross-rank average) are saved as safetensors, keyed "step.optimiser.group.param" (step from 1, optimisers numbered
in the order they first step).

    python -m benchmarks.trainer_probe --report probe.json trainers.styleforge --checkpoint ... --output-dir ...
    torchrun --nproc-per-node 2 -m benchmarks.trainer_probe --report 'probe-{rank}.json' trainers.style_tokens.stage1
"""
import argparse
import importlib
import json
import math
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

WARM_UP_GAPS = 2


def peak_rss_gib() -> float:
    """This process's own peak resident set (VmHWM), in GiB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**30   # no /proc (macOS): ru_maxrss, in bytes


def device_name() -> str:
    """The accelerator this process used, or "cpu"."""
    if torch.cuda.is_initialized():
        index = torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return "cpu"


class StepProbe:
    """Installs the hooks on construction, for the rest of the process; `report()` says what the steps cost so far.
    With `gradient_steps`, `self.gradients` collects each optimiser's gradients at its first `gradient_steps` steps
    (fp32, on the CPU)."""

    def __init__(self, gradient_steps: int = 0):
        self.stamps: list[float] = []
        # id(optimiser) -> (the optimiser, kept alive so its id is never reused; [(param, its copy at step 1)])
        self.initial: dict[int, tuple[torch.optim.Optimizer, list[tuple[torch.Tensor, torch.Tensor]]]] = {}
        self.steps_taken: dict[int, int] = {}
        self.gradient_steps = gradient_steps
        self.gradients: dict[str, torch.Tensor] | None = {} if gradient_steps else None
        register_optimizer_step_pre_hook(self._before_step)
        register_optimizer_step_post_hook(self._after_step)

    def _before_step(self, optimizer, args, kwargs) -> None:
        if id(optimizer) not in self.initial:
            self.initial[id(optimizer)] = (optimizer, [(p, p.detach().to("cpu", copy=True))
                                                       for group in optimizer.param_groups for p in group["params"]])
        index = list(self.initial).index(id(optimizer))
        step = self.steps_taken[id(optimizer)] = self.steps_taken.get(id(optimizer), 0) + 1
        if self.gradients is not None and step <= self.gradient_steps:
            for g, group in enumerate(optimizer.param_groups):
                for i, p in enumerate(group["params"]):
                    if p.grad is not None:
                        self.gradients[f"{step}.{index}.{g}.{i}"] = p.grad.detach().to(
                            "cpu", torch.float32, copy=True, memory_format=torch.contiguous_format)

    def _after_step(self, optimizer, args, kwargs) -> None:
        if torch.cuda.is_initialized():
            torch.cuda.synchronize()
        self.stamps.append(time.perf_counter())

    def seconds_per_step(self) -> float:
        """Median gap between consecutive optimiser steps after the warm-up (NaN with fewer than two steps)."""
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:])]
        timed = gaps[WARM_UP_GAPS:] or gaps
        return statistics.median(timed) if timed else math.nan

    def weight_change(self) -> dict:
        """For every optimiser: the largest absolute change of any parameter since its first step, and whether every
        parameter is still finite. `smallest_max_change` is over optimisers: > 0 means each one moved its weights."""
        changes, finite = [], True
        for _, pairs in self.initial.values():
            largest = 0.0
            for param, start in pairs:
                change = (param.detach().to("cpu", torch.float32) - start.float()).abs()
                if not torch.isfinite(change).all():      # the start is finite, so the weights are not
                    finite, largest = False, math.nan
                    break
                largest = max(largest, float(change.max())) if change.numel() else largest
            changes.append(largest)
        return {"optimisers": len(changes), "weights_finite": finite,
                "smallest_max_change": min(changes, default=0.0) if finite else math.nan}

    def report(self) -> dict:
        return {"device": device_name(), "optimiser_steps": len(self.stamps),
                "seconds_per_step": self.seconds_per_step(), "warm_up_gaps": WARM_UP_GAPS,
                "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_initialized() else None,
                "peak_rss_gib": peak_rss_gib(), **self.weight_change()}


def gib(value: float | None) -> str:
    """A report's GiB figure for printing; "-" where it was not measured (no GPU)."""
    return "-" if value is None else f"{value:.2f}"


def rank_path(path: Path) -> Path:
    """`path` with `{rank}` replaced by torchrun's RANK (0 without torchrun), its folder made."""
    path = Path(str(path).format(rank=os.environ.get("RANK", "0")))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_report(report: dict, path: Path) -> Path:
    """`path` may hold `{rank}` (torchrun's RANK), so every rank writes its own report."""
    path = rank_path(path)
    path.write_text(json.dumps(report, indent=1))
    return path


def read_report(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--report", type=Path, required=True, help="where the JSON report goes ({rank} is replaced)")
    p.add_argument("--gradients", type=Path, help="save each optimiser's gradients of its first --gradient-steps "
                                                   "steps here as safetensors ({rank} is replaced)")
    p.add_argument("--gradient-steps", type=int, default=1, help="how many first steps --gradients saves")
    p.add_argument("module", help="a trainer module with parse_args(argv) and main(args), e.g. trainers.styleforge")
    p.add_argument("arguments", nargs=argparse.REMAINDER, help="the trainer's own arguments")
    return p.parse_args(argv)


def main(args) -> None:
    trainer = importlib.import_module(args.module)
    probe = StepProbe(gradient_steps=args.gradient_steps if args.gradients is not None else 0)
    sys.argv = [args.module, *args.arguments]     # as if the trainer had been started itself
    trainer.main(trainer.parse_args(args.arguments))
    write_report(probe.report(), args.report)
    if args.gradients is not None:
        save_file(probe.gradients, str(rank_path(args.gradients)))


if __name__ == "__main__":
    main(parse_args())
