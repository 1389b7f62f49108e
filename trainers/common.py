"""The trainer shell every StyleSmith trainer shares.

diffusers-examples shape: each trainer has `parse_args(argv)` -> `main(args)`; this module gives
them the common flags, the run summary printed first, atomic checkpoints that resume after
`kill -9` (model + optimiser + step + RNG + config, loaded with weights_only=True), precision,
torchrun data parallelism, and the pictures written beside the checkpoints.
"""
import argparse
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from core.errors import UserValueError
from core.formats.atomic_files import write_atomic, write_text_atomic

from . import precision as precisions

CHECKPOINT_NAME = "checkpoint.pt"


def add_common_args(p: argparse.ArgumentParser, steps: int, lr: float, save_every: int | None,
                    steps_help: str = "optimiser steps", grad_accum: bool = True, base_model: bool = True) -> None:
    """The flags every trainer has; save_every=None for trainers that checkpoint per finished unit of work,
    grad_accum=False for those whose batch is the unit of work, base_model=False for those without a
    frozen diffusion model."""
    g = p.add_argument_group("run")
    g.add_argument("--output-dir", type=Path, required=True, help="checkpoints, the result file and pictures go here")
    g.add_argument("--steps", type=int, default=steps, help=f"{steps_help} (default {steps})")
    g.add_argument("--lr", type=float, default=lr, help=f"learning rate (default {lr})")
    if grad_accum:
        g.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimiser step")
    g.add_argument("--precision", choices=precisions.CHOICES, default="auto",
                   help="dtype of the forward pass" + (" and of the frozen base model's weights" if base_model else "")
                   + "; trainable weights stay fp32 (auto: " + ("what ComfyUI loads the base in: fp16 or bf16 on a "
                   "GPU, fp32 on the CPU)" if base_model else "bf16 on a GPU that has it, else fp32)"))
    if base_model:
        g.add_argument("--gradient-checkpointing", action="store_true",
                       help="recompute the denoiser's blocks (UNet or transformer) in backward: far less memory "
                            "(SDXL, Klein, Z-Image at 1024 px), about a third more time")
    g.add_argument("--seed", type=int, default=0, help="seed of everything random: same seed, same run")
    if save_every is not None:
        g.add_argument("--save-every", type=int, default=save_every, help="write a resumable checkpoint every N steps")
    g.add_argument("--no-resume", action="store_true", help="start over even if OUTPUT_DIR holds a checkpoint")
    g.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    g.add_argument("--debug", action="store_true", help="show the Python traceback of an error (also: "
                                                         "STYLESMITH_DEBUG=1); without it a mistake is one line")


# UNETLoader's weight_dtype choices a trainer offers for a frozen diffusion model (not "fp8_e4m3fn_fast": its fp8
# matmul has no backward)
BASE_WEIGHT_DTYPES = {"default": None, "bf16": torch.bfloat16, "fp8_e4m3fn": torch.float8_e4m3fn,
                      "fp8_e5m2": torch.float8_e5m2}


def add_base_model_args(p: argparse.ArgumentParser) -> None:
    """The frozen base model, as users have it: one single-file checkpoint (SD1.x, SDXL), or a family's split files
    (Flux.2 Klein, Z-Image: diffusion model, text encoder, VAE), loaded by ComfyUI's own loaders."""
    g = p.add_argument_group("base model: --checkpoint, or --diffusion-model with --text-encoder and --vae")
    g.add_argument("--checkpoint", type=Path, help="a single-file .safetensors checkpoint (SD1.x, SDXL)")
    g.add_argument("--diffusion-model", type=Path, help="a diffusion model file from models/diffusion_models "
                                                         "(Flux.2 Klein, Z-Image), as UNETLoader loads it")
    g.add_argument("--text-encoder", type=Path, action="append", default=[],
                   help="its text encoder file from models/text_encoders (repeat for a family with two)")
    g.add_argument("--vae", help="its VAE file from models/vae, or an approximate VAE by its path without the "
                                 "_encoder/_decoder suffix (models/vae_approx/taef2)")
    g.add_argument("--base-weight-dtype", choices=list(BASE_WEIGHT_DTYPES), default="default",
                   help="split files only: the dtype the frozen diffusion model is held in, as UNETLoader's "
                        "weight_dtype (fp8_e4m3fn / fp8_e5m2: ComfyUI casts each layer to the compute dtype as it "
                        "runs; default: as --precision)")
    g.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: $COMFYUI_PATH or the one this pack is in)")


def check_base_model_args(p: argparse.ArgumentParser, args) -> None:
    split = [args.diffusion_model, args.text_encoder, args.vae]
    if args.checkpoint is not None and any(split):
        p.error("give either --checkpoint (a single-file checkpoint) or --diffusion-model, --text-encoder and --vae "
                "(split files), not both")
    if args.checkpoint is not None and args.base_weight_dtype != "default":
        p.error(f"--base-weight-dtype {args.base_weight_dtype} is for split files (--diffusion-model); a single-file "
                "checkpoint is held in the dtype --precision gives")
    if args.checkpoint is None and not all(split):
        p.error("the base model is required: --checkpoint (SD1.x, SDXL), or --diffusion-model, --text-encoder and "
                "--vae (Flux.2 Klein, Z-Image)")


def base_model_file(args) -> Path:
    """The file that names the base model in run summaries and in the metadata of what a trainer writes."""
    return args.checkpoint or args.diffusion_model


def check_common_args(p: argparse.ArgumentParser, args, zero_steps_means: str | None = None) -> None:
    """Reject impossible settings naming the flag; `zero_steps_means` documents a trainer's --steps 0."""
    flags = ("grad_accum", "save_every") if zero_steps_means and args.steps == 0 else ("steps", "grad_accum", "save_every")
    for flag in flags:
        if getattr(args, flag, 1) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1 (got {getattr(args, flag)})")
    if args.lr <= 0:
        p.error(f"--lr must be positive (got {args.lr})")
    check_output_dir(p, args.output_dir)
    if args.precision == "fp16" and (args.device or "cpu") == "cpu" and not torch.cuda.is_available():
        p.error("--precision fp16 needs a GPU; use bf16 or fp32 on the CPU")


def check_output_dir(p: argparse.ArgumentParser, output_dir: Path) -> None:
    """Before any work: OUTPUT_DIR must be a folder that exists or can be made, and that this user can write."""
    existing = next((d for d in (output_dir, *output_dir.parents) if d.exists()), None)
    if output_dir.exists() and not output_dir.is_dir():
        p.error(f"--output-dir {output_dir} is a file: give a folder (it is made if missing)")
    if existing is not None and not existing.is_dir():
        p.error(f"--output-dir {output_dir} cannot be made: {existing} is a file, not a folder")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        p.error(f"--output-dir {output_dir} cannot be written: no write permission on {existing}")


# ---- distributed ------------------------------------------------------------------------------
@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world_size > 1:
            dist.destroy_process_group()


def init_distributed(device_flag: str | None) -> Distributed:
    """One process per rank under torchrun (env RANK/WORLD_SIZE); gloo on CPU, nccl on CUDA."""
    device = torch.device(device_flag or ("cuda" if torch.cuda.is_available() else "cpu"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed(device=device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world_size)
    return Distributed(rank=rank, world_size=world_size, device=device)


def open_base_model(args, world: Distributed):
    """(the base model loaded by ComfyUI with its weights in --precision's dtype, the resolved Precision), with
    gradient checkpointing when asked for."""
    if args.checkpoint is not None:
        from comfy_adapter.diffusion import open_checkpoint
        diffusion = open_checkpoint(args.checkpoint, world.device, args.comfyui, weights=args.precision)
    else:
        from comfy_adapter.split_files import open_split_files
        diffusion = open_split_files(args.diffusion_model, args.text_encoder, args.vae, world.device, args.comfyui,
                                     weights=args.precision, weight_dtype=BASE_WEIGHT_DTYPES[args.base_weight_dtype])
    if args.gradient_checkpointing:
        diffusion.enable_gradient_checkpointing()
    return diffusion, precisions.Precision.resolve(args.precision, world.device, diffusion.compute_dtype)


def precision_summary(diffusion, precision: precisions.Precision) -> str:
    """For the run summary: what the frozen base is held in and what the forward pass computes in."""
    held = ", ".join(f"{part} {precisions.NAMES.get(dtype, dtype)}" for part, dtype in diffusion.base_dtypes.items())
    return f"frozen {held}; {precision.describe()}"


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """Randomness of one step as a function of (seed, step, rank): a resumed run draws what the
    uninterrupted run drew, whatever happened in between."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 64 + rank)


# ---- run summary --------------------------------------------------------------------------------
def print_run_summary(title: str, args, facts: dict, world: Distributed) -> None:
    """Say up front what will run; also written to OUTPUT_DIR/run_summary.json."""
    if not world.is_main:
        return
    settings = {k: str(v) for k, v in sorted(vars(args).items())}
    rows = {**facts, "ranks": world.world_size, "device": str(world.device)}
    width = max(map(len, list(rows) + list(settings)))
    print(f"== {title} ==")
    for k, v in rows.items():
        print(f"  {k:<{width}}  {v}")
    print("  settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output_dir / "run_summary.json", "run summary",
                      json.dumps({"facts": {k: str(v) for k, v in rows.items()}, "settings": settings}, indent=1))


# ---- checkpoints ------------------------------------------------------------------------------
def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def tensor_bytes(value) -> int:
    """Bytes of the tensors in a nested state (dicts, lists, tuples): about the size of its torch.save file."""
    if isinstance(value, torch.Tensor):
        return value.nbytes
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def save_checkpoint(output_dir: Path, state: dict) -> Path:
    """torch.save through core.formats.atomic_files: a kill, a stop signal or a full disk leaves the old
    checkpoint whole."""
    state = dict(state, rng=rng_state())
    return write_atomic(output_dir / CHECKPOINT_NAME, "checkpoint", lambda f: torch.save(state, f),
                        tensor_bytes(state) + (1 << 16))


def load_checkpoint(output_dir: Path, config: dict) -> dict | None:
    """The checkpoint in output_dir, or None. Refuses one written for a different configuration."""
    path = output_dir / CHECKPOINT_NAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    saved = json.loads(state["config"])
    differing = sorted(k for k in config if k in saved and saved[k] != config[k] and k not in RESUMABLE_CHANGES)
    if differing:
        shown = "; ".join(f"--{k.replace('_', '-')} {saved[k]} there, {config[k]} now" for k in differing)
        raise UserValueError(f"{path} was written by a run with other settings ({shown}). Pass --no-resume to start "
                             "over in this folder, or another --output-dir to keep that run.")
    set_rng_state(state["rng"])
    return state


# settings with no effect on training: a resume may change them
RESUMABLE_CHANGES = {"steps", "save_every", "output_dir", "no_resume", "device", "sample_steps", "workers", "debug"}


def resume(args, config: dict, stateful: dict) -> tuple[int, dict]:
    """Restore every object of `stateful` (checkpoint key -> object with load_state_dict) from OUTPUT_DIR's
    checkpoint unless --no-resume; return (step to start at, loss history)."""
    state = None if args.no_resume else load_checkpoint(args.output_dir, config)
    if state is None:
        return 0, {}
    for key, obj in stateful.items():
        obj.load_state_dict(state[key])
    print(f"resuming from step {state['step']}")
    return state["step"], json.loads(state["history"])


def save_training_state(args, config: dict, stateful: dict, step: int, history: dict) -> Path:
    """The counterpart of `resume`: every object's state dict, the step, the history and the settings."""
    return save_checkpoint(args.output_dir, {**{key: obj.state_dict() for key, obj in stateful.items()},
                                             "step": step, "history": json.dumps(history),
                                             "config": json.dumps(config)})


def config_of(args) -> dict:
    """The run's settings as plain JSON values (paths become strings)."""
    return json.loads(json.dumps(vars(args), default=str))


# ---- pictures ---------------------------------------------------------------------------------
def plot_losses(history: dict[str, list[tuple[int, float]]], path: Path, title: str) -> None:
    """Loss curves (raw and a moving average) as a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, points in history.items():
        if not points:
            continue
        steps, values = zip(*points)
        line, = ax.plot(steps, values, alpha=0.3, linewidth=1)
        window = max(1, len(values) // 20)
        smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, color=line.get_color(), label=name, linewidth=2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def save_image_grid(rows: dict[str, torch.Tensor], path: Path) -> None:
    """One labelled row per entry; each value is an IMAGE batch (N, H, W, 3) in [0, 1]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = max(v.shape[0] for v in rows.values())
    fig, axes = plt.subplots(len(rows), columns, figsize=(2 * columns, 2 * len(rows) + 0.3), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r][c]
            ax.axis("off")
            if c < images.shape[0]:
                ax.imshow(images[c].clamp(0, 1).float().cpu().numpy())
        axes[r][0].set_title(label, fontsize=8, loc="left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_embedding_map(features: torch.Tensor, labels: list[str], path: Path, title: str) -> None:
    """2-D PCA of encoder features coloured by style label (the paper's Fig. 2 uses t-SNE)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    centred = features.float() - features.float().mean(0)
    _, _, v = torch.pca_lowrank(centred, q=2, center=False)
    xy = (centred @ v[:, :2]).numpy()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    for label in sorted(set(labels)):
        picked = [i for i, l in enumerate(labels) if l == label]
        ax.scatter(xy[picked, 0], xy[picked, 1], s=14, label=label)
    ax.set_title(title)
    if len(set(labels)) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
