"""The shared training loop, precision and gradient checkpointing, on a toy model and on the tiny SD1.5."""
import argparse
import json
import os
import subprocess
import sys

import pytest
import torch

from devkit.paths import REPO_ROOT
from trainers.common import Distributed
from trainers.precision import Precision
from trainers.training_loop import WARM_UP_STEPS, TrainingLoop

DATA = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
TARGET = DATA @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def toy_args(out, steps: int, grad_accum: int = 1, save_every: int = 2, no_resume: bool = False):
    return argparse.Namespace(output_dir=out, steps=steps, grad_accum=grad_accum, save_every=save_every,
                              no_resume=no_resume, lr=0.1)


def toy_loop(args) -> tuple[TrainingLoop, torch.nn.Linear]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    loop = TrainingLoop(args, Distributed(), Precision.resolve("fp32", torch.device("cpu")),
                        torch.optim.Adam(model.parameters(), lr=args.lr), {"model": model})
    return loop, model


def mse(model, rows) -> torch.Tensor:
    return (model(DATA[rows]).squeeze(1) - TARGET[rows]).pow(2).mean()


def test_accumulated_micro_steps_equal_one_step_on_their_union(tmp_path):
    halves = iter([slice(0, 4), slice(4, 8)])
    accumulated, a = toy_loop(toy_args(tmp_path / "a", 1, grad_accum=2))
    parts = accumulated.accumulated_step(lambda: (lambda loss: (loss, {"mse": loss.item()}))(mse(a, next(halves))))
    whole, b = toy_loop(toy_args(tmp_path / "b", 1))
    expected = mse(b, slice(0, 8))
    whole.accumulated_step(lambda: (expected, {}))
    assert torch.allclose(a.weight, b.weight, atol=1e-7) and not torch.equal(a.weight, torch.nn.Linear(4, 1).weight)
    assert parts["mse"] == pytest.approx(expected.item(), rel=1e-6)


def test_run_records_history_times_steps_and_resumes_bit_identically(tmp_path):
    def train(out, steps, **kw):
        loop, model = toy_loop(toy_args(out, steps, **kw))
        saved = []

        def step(i):
            rows = torch.randperm(8, generator=torch.Generator().manual_seed(i))[:4]
            return loop.accumulated_step(lambda: (lambda loss: (loss, {"mse": loss.item()}))(mse(model, rows)))
        return loop.run(steps, step, "toy", saved.append), model, saved, loop.start

    _, _, saved, start = train(tmp_path / "run", 4)
    assert (saved, start) == ([2, 4], 0)
    history, resumed, saved, start = train(tmp_path / "run", 6)
    assert (saved, start) == ([6], 4)
    assert [s for s, _ in history["mse"]] == [1, 2, 3, 4, 5, 6]
    _, straight, _, _ = train(tmp_path / "straight", 6)
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    timing = json.loads((tmp_path / "straight" / "timing.json").read_text())
    assert timing["steps_timed"] == 6 - WARM_UP_STEPS and timing["seconds_per_step"] > 0
    assert timing["precision"] == "fp32" and "peak_gpu_gib" not in timing


def test_precision_follows_the_base_unless_told():
    cpu = torch.device("cpu")
    assert Precision.resolve("auto", cpu, torch.bfloat16).name == "bf16"
    assert Precision.resolve("auto", cpu).name == "fp32"
    assert Precision.resolve("fp32", cpu, torch.float16).name == "fp32"
    assert not Precision.resolve("bf16", cpu).scaler.is_enabled()
    with Precision.resolve("bf16", cpu).autocast():
        assert torch.nn.functional.linear(torch.ones(1, 2), torch.ones(3, 2)).dtype == torch.bfloat16


def test_gradient_checkpointing_leaves_the_gradients_unchanged(tiny_checkpoint):
    from comfy_adapter.diffusion import ComfyDiffusion
    from core.lora.adapters import LoRASet
    from trainers.styleforge import UNET_TARGETS
    diffusion = ComfyDiffusion(tiny_checkpoint("sd15"), torch.device("cpu"))
    torch.manual_seed(0)
    lora = LoRASet(diffusion.unet_module, UNET_TARGETS, 4, 4.0)
    for pair in lora.pairs.values():
        torch.nn.init.normal_(pair.up.weight, std=0.02)
    lora.attach()
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond, pooled = diffusion.encode_prompt("a photo of a zwx style")

    calls = []
    diffusion.unet_module.get_submodule(lora.names[0]).register_forward_hook(lambda *_: calls.append(1))

    def gradients():
        lora.zero_grad(set_to_none=True)
        calls.clear()
        diffusion.diffusion_loss(latents, cond, pooled, torch.Generator().manual_seed(2)).backward()
        return {name: p.grad.clone() for name, p in lora.named_parameters()}, len(calls)

    plain, plain_calls = gradients()
    assert diffusion.enable_gradient_checkpointing() > 0
    checkpointed, recomputed_calls = gradients()
    assert (plain_calls, recomputed_calls) == (1, 2), "a checkpointed block runs again in backward"
    assert diffusion.enable_gradient_checkpointing() == diffusion.enable_gradient_checkpointing(), "idempotent"
    assert max((plain[k] - checkpointed[k]).abs().max().item() for k in plain) <= 1e-6
    assert any(v.abs().max() > 0 for v in plain.values())


RANK_SCRIPT = """
import json, sys
import torch
import torch.distributed as dist
from trainers import training_loop

dist.init_process_group("gloo")
rank, calls = dist.get_rank(), []
reduce = dist.all_reduce
training_loop.dist.all_reduce = lambda tensor, *a, **k: (calls.append(tensor.numel()), reduce(tensor, *a, **k))[1]
shapes = [(3, 4), (5,), (2, 2, 2)] * 100                 # 300 tensors, as a DiT LoRA has
grads = [torch.full(s, float(rank + 1) * (i + 1)) for i, s in enumerate(shapes)] + [torch.full((2,), rank + 1.0,
                                                                                              dtype=torch.bfloat16)]
training_loop.average_over_ranks(grads, dist.get_world_size())
json.dump({"calls": calls, "means": [g.flatten()[0].item() for g in grads], "shapes": [list(g.shape) for g in grads],
           "dtypes": [str(g.dtype) for g in grads]}, open(sys.argv[1].format(rank=rank), "w"))
dist.destroy_process_group()
"""


def test_ranks_average_their_gradients_in_one_all_reduce_per_dtype(tmp_path):
    """300 fp32 gradients and one bf16: two all-reduces in all (not one per tensor), every gradient the mean over the
    ranks, in place, with its shape and dtype."""
    script = tmp_path / "ranks.py"
    script.write_text(RANK_SCRIPT)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(script),
                           str(tmp_path / "rank-{rank}.json")], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1]
    report = reports[0]
    assert report["calls"] == [(12 + 5 + 8) * 100, 2]
    assert report["means"] == [1.5 * (i + 1) for i in range(300)] + [1.5]
    assert report["shapes"][:3] == [[3, 4], [5], [2, 2, 2]] and report["dtypes"][-2:] == ["torch.float32", "torch.bfloat16"]
