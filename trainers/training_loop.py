"""The training loop the trainers share; each plugs in its step.

It owns what every trainer did by hand: resume from OUTPUT_DIR (bit-identical, see common.resume), tqdm,
precision (autocast, fp16 loss scaling), gradient accumulation, data-parallel optimiser steps, the loss history,
atomic checkpoints every --save-every steps and at the end, and step timing (OUTPUT_DIR/timing.json).
A stop signal (trainers/stop_signals.py) ends the run after the step in progress, with a checkpoint of that step.
"""
import json
import statistics
import time
from typing import Callable

import torch
import torch.distributed as dist
from tqdm import tqdm

from core.formats.atomic_files import DiskFullError, write_text_atomic

from . import common
from .precision import Precision
from .stop_signals import RESUME_HINT, Stopped, finishing_steps, signal_name, stop_requested

WARM_UP_STEPS = 2      # not timed: first-step allocations, cuDNN autotuning, lazy ComfyUI loading


def average_over_ranks(grads: list[torch.Tensor], world_size: int) -> None:
    """Replace each gradient by its mean over the ranks, in one all-reduce per dtype (one in practice) over the
    gradients flattened into one buffer: a DiT LoRA has hundreds of tensors, and an all-reduce each costs a
    round trip each. Every rank holds gradients for the same parameters, in the same order."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for grad in grads:
        by_dtype.setdefault(grad.dtype, []).append(grad)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat /= world_size
        for grad, averaged in zip(group, torch.split(flat, [g.numel() for g in group])):
            grad.copy_(averaged.view_as(grad))


class TrainingLoop:
    def __init__(self, args, world: common.Distributed, precision: Precision, optimizer: torch.optim.Optimizer,
                 stateful: dict, schedule=None):
        """`stateful`: checkpoint key -> the trained modules (optimiser, schedule and loss scaler are added)."""
        self.args, self.world, self.precision, self.optimizer, self.schedule = args, world, precision, optimizer, schedule
        self.config = common.config_of(args)
        self.stateful = {**stateful, "optimizer": optimizer}
        if schedule is not None:
            self.stateful["schedule"] = schedule
        if precision.scaler.is_enabled():
            self.stateful["scaler"] = precision.scaler
        self.start, self.history = common.resume(args, self.config, self.stateful)
        self.saved_step = self.start

    def backward(self, loss: torch.Tensor) -> None:
        self.precision.backward(loss)

    def optimiser_step(self) -> None:
        """Each rank's gradients become their mean over ranks (what DDP's reducer does), then one step."""
        if self.world.world_size > 1:
            average_over_ranks([p.grad for group in self.optimizer.param_groups for p in group["params"]
                                if p.grad is not None], self.world.world_size)
        self.precision.step(self.optimizer)

    def accumulated_step(self, micro_step: Callable[[], tuple[torch.Tensor, dict[str, float]]]) -> dict[str, float]:
        """--grad-accum micro-steps, each under autocast and followed by its backward, then one optimiser step.
        `micro_step` returns (loss, its named parts); the parts' means over the micro-steps are returned."""
        accum = getattr(self.args, "grad_accum", 1)
        totals: dict[str, float] = {}
        for _ in range(accum):
            with self.precision.autocast():
                loss, parts = micro_step()
            self.backward(loss / accum)
            for name, value in parts.items():
                totals[name] = totals.get(name, 0.0) + value / accum
        self.optimiser_step()
        return totals

    def run(self, steps: int, step: Callable[[int], dict[str, float]], desc: str,
            on_save: Callable[[int], None] | None = None) -> dict:
        """Call `step(i)` for i in [start, steps): it trains and returns its named losses, which go into the
        history. Every --save-every steps and after the last, `on_save(step)` writes the trainer's own files,
        then the resumable checkpoint follows (main rank only)."""
        timings = []
        progress = tqdm(range(self.start, steps), initial=self.start, total=steps, desc=desc,
                        disable=not self.world.is_main)
        with finishing_steps():
            for i in progress:
                self._synchronise()
                started = time.perf_counter()
                parts = step(i)
                self._synchronise()
                timings.append(time.perf_counter() - started)
                if self.schedule is not None:
                    self.schedule.step()
                for name, value in parts.items():
                    self.history.setdefault(name, []).append((i + 1, value))
                progress.set_postfix({name: f"{value:.4f}" for name, value in list(parts.items())[:3]})
                stop = self._stop_signal()
                if (i + 1) % self.args.save_every == 0 or i + 1 == steps or stop:
                    self.save(i + 1, on_save)
                if stop:
                    progress.close()
                    raise Stopped(stop, f"stopped by {signal_name(stop)} after step {i + 1} of {steps}; the "
                                        f"checkpoint of step {i + 1} is in {self.args.output_dir}. {RESUME_HINT} "
                                        f"from step {i + 1}.")
        if self.world.is_main and timings:
            self._write_timing(timings)
        return self.history

    def save(self, step: int, on_save: Callable[[int], None] | None) -> None:
        """The trainer's files, then the checkpoint. A full disk stops the run with what resuming will do."""
        if not self.world.is_main:
            return
        try:
            if on_save is not None:
                on_save(step)
            common.save_training_state(self.args, self.config, self.stateful, step, self.history)
        except DiskFullError as e:
            kept = (f" The checkpoint of step {self.saved_step} is kept: once there is space, run the same command "
                    f"again to resume from step {self.saved_step}." if self.saved_step else "")
            raise DiskFullError(f"{e}{kept}") from e
        self.saved_step = step

    def _stop_signal(self) -> int | None:
        """The stop signal any rank received during this step (each rank stops after the same step)."""
        received = stop_requested() or 0
        if self.world.world_size > 1:
            flag = torch.tensor([received], device=self.world.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        return received or None

    def _synchronise(self) -> None:
        if self.world.device.type == "cuda":
            torch.cuda.synchronize(self.world.device)

    def _write_timing(self, timings: list[float]) -> None:
        """Seconds per step after warm-up (median) and this process's peak accelerator memory."""
        timed = timings[WARM_UP_STEPS:] or timings
        report = {"device": str(self.world.device), "precision": self.precision.name, "steps_timed": len(timed),
                  "seconds_per_step": statistics.median(timed), "warm_up_steps": len(timings) - len(timed)}
        if self.world.device.type == "cuda":
            report["peak_gpu_gib"] = torch.cuda.max_memory_allocated(self.world.device) / 2**30
        write_text_atomic(self.args.output_dir / "timing.json", "step timing", json.dumps(report, indent=1))
