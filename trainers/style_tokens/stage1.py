"""Style tokens, stage 1 (Chang, DESIGN §5.1): per-image style inversion.

Each image i gets its own tokens V_i (n_tokens x width per text encoder, init N(0, 0.02^2)); everything
else is frozen. V_i replaces the placeholder of the image's caption at the text encoder's input (the
same injection as the nodes, inside the chat template on LLM encoders) and is fitted with the base model's own
diffusion loss on the image's VAE latents, sigma uniform over the model's training table:
    min_V  E_{t, eps} || f_theta(z_t, t, TE(caption[sks -> V_i])) - target(eps, z_0, t) ||^2
where f is the network's raw output and its target what ComfyUI's model_sampling implies (comfy_adapter/objective.py):
the noise eps for SD1.x / SDXL (the paper's loss), the flow velocity eps - z_0 for Flux.2 Klein and Z-Image.
Images go in batches, each with its own V_i (AdamW, lr 1e-3, 200 steps, batch 8, 512 px by default): one
text-encoder pass and one UNet pass per batch. Captions may run past the text encoder's 77 tokens: they are encoded
in 77-token chunks, as ComfyUI encodes the prompt when sampling (the authors truncate at 77).
Finished batches are written as token shards + index (core/formats/token_shards.py), so a resumed run skips
them. Under torchrun each rank takes the disjoint slice examples[rank::world_size].

    python -m trainers.style_tokens.stage1 --checkpoint sd15.safetensors --data manifest.jsonl --output-dir tokens/
    torchrun --nproc-per-node 2 -m trainers.style_tokens.stage1 ...
    python -m trainers.style_tokens.stage1 --output-dir tokens/ --export IMAGE_ID --to models/embeddings/x.safetensors
"""
import argparse
import hashlib
import json
import resource
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core.errors import UserValueError, expect_path
from core.formats.atomic_files import DiskFullError, write_text_atomic
from core.formats.embedding_file import check_embedding_name, save_embedding
from core.data import image_stream
from core.data.style_dataset import read_style_dataset
from core.formats.token_shards import load_tokens, read_index, read_loss_curves, write_shard

from comfy_adapter.batch_conditioning import encode_prompts_with_style
from comfy_adapter.diffusion import encode_prompt_with_style
from comfy_adapter.families import text_encoder_widths
from .. import cli, common
from ..stop_signals import RESUME_HINT, Stopped, finishing_steps, signal_name, stop_requested


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_base_model_args(p)
    p.add_argument("--data", type=Path, help="JSONL manifest {image, caption, style} or a Style30K-style folder")
    p.add_argument("--n-tokens", type=int, default=8, help="style tokens per image (paper: 8)")
    p.add_argument("--batch-size", type=int, default=8, help="images inverted together, each with its own tokens")
    p.add_argument("--resolution", type=int, default=512, help="training resolution in pixels")
    p.add_argument("--init-std", type=float, default=0.02, help="std of the tokens' normal init")
    p.add_argument("--placeholder", default="sks", help="the caption word the tokens replace")
    p.add_argument("--sample-steps", type=int, default=20, help="sampler steps of samples.png (0: none)")
    p.add_argument("--workers", type=int, default=2, help="processes decoding the next batches ahead of training")
    p.add_argument("--export", metavar="IMAGE_ID", help="instead of training: export this image's tokens ...")
    p.add_argument("--to", type=Path, help="... as a ComfyUI embedding at this path (.safetensors)")
    common.add_common_args(p, steps=200, lr=1e-3, save_every=None, steps_help="optimiser steps per batch",
                           grad_accum=False)
    args = p.parse_args(argv)
    if args.export is not None:
        if args.to is None:
            p.error("--export needs --to PATH")
        try:
            check_embedding_name(args.to.stem)
        except ValueError as e:
            p.error(f"--to {args.to}: {e}")
        return args
    common.check_common_args(p, args)
    common.check_base_model_args(p, args)
    if args.data is None:
        p.error("--data is required (unless --export)")
    if args.n_tokens < 1 or args.batch_size < 1 or args.resolution < 64 or args.resolution % 8 or args.sample_steps < 0:
        p.error("--n-tokens and --batch-size must be at least 1, --resolution a multiple of 8 of at least 64, "
                "--sample-steps at least 0")
    return args


def stable_seed(seed: int, text: str) -> int:
    return (seed * 1_000_003 + int(hashlib.sha256(text.encode()).hexdigest()[:12], 16)) % 2**63


def init_tokens(ids: list[str], widths: dict[str, int], n_tokens: int, std: float, seed: int) -> dict:
    """Per-image init from (seed, image id): the same image starts the same wherever and whenever it runs."""
    tokens = {key: torch.stack([torch.randn(n_tokens, width, generator=torch.Generator().manual_seed(
        stable_seed(seed, f"{key}/{i}"))) * std for i in ids]) for key, width in widths.items()}
    return {key: torch.nn.Parameter(value) for key, value in tokens.items()}


def batch_loss(diffusion, latents: torch.Tensor, captions: list[str], tokens: dict, placeholder: str,
               generators: list[torch.Generator]) -> torch.Tensor:
    """Each image's loss (N,), equal to its one-image loss: one text-encoder pass encodes every caption with its own
    tokens (captions of any length, in 77-token chunks as ComfyUI encodes them; rows of different lengths are joined
    as ComfyUI batches them), then one UNet pass for the whole batch."""
    cond, pooled = encode_prompts_with_style(diffusion, captions, tokens, placeholder)
    return diffusion.diffusion_losses(latents, cond, pooled, generators)


def invert_batch(diffusion, precision, latents, captions, ids, args, widths) -> tuple[dict, list[float]]:
    """Fit one batch's tokens; returns (tokens, mean loss per step). Randomness comes from (seed, ids, step).

    The objective is the sum of the images' losses, so each image's tokens get the gradient of their own loss at
    full scale whatever the batch size (with a mean, AdamW's epsilon would make results depend on it)."""
    tokens = init_tokens(ids, widths, args.n_tokens, args.init_std, args.seed)
    optimizer = torch.optim.AdamW(tokens.values(), lr=args.lr, weight_decay=0.0)
    history = []
    for step in range(args.steps):
        if stop_requested():
            raise Stopped(stop_requested(), f"stopped by {signal_name(stop_requested())}; the finished batches "
                                            f"are kept in {args.output_dir}, the batch in progress ({len(ids)} "
                                            f"images) is dropped. {RESUME_HINT} with it.")
        generators = [torch.Generator().manual_seed(stable_seed(args.seed, f"{i}/{step}")) for i in ids]
        with precision.autocast():
            losses = batch_loss(diffusion, latents, captions, tokens, args.placeholder, generators)
        precision.backward(losses.sum())
        precision.step(optimizer)
        history.append(losses.mean().item())
    return {k: v.detach() for k, v in tokens.items()}, history


def load_images(examples, resolution: int, workers: int = 2) -> torch.Tensor:
    return image_stream.load_images([e.image for e in examples], resolution, workers)


def write_samples(diffusion, examples, tokens: dict, args) -> None:
    """samples.png: reference images beside images generated from their inverted tokens and captions."""
    with torch.no_grad():
        conditions = [encode_prompt_with_style(diffusion, e.caption, {k: v[i] for k, v in tokens.items()},
                                               args.placeholder) for i, e in enumerate(examples)]
    generated = diffusion.sample_conditioned(conditions, "blurry, low quality", min(args.resolution, 512),
                                             args.sample_steps, args.seed)
    common.save_image_grid({"reference": load_images(examples, min(args.resolution, 512)),
                            "generated from its tokens": generated}, args.output_dir / "samples.png")


def plot_loss_curves(output_dir: Path) -> None:
    """loss.png from every batch inverted so far, this run's and earlier runs' alike: the last 8 batches and the
    mean curve over all of them."""
    curves = list(read_loss_curves(output_dir).values())
    shown = {f"batch {len(curves) - len(curves[-8:]) + i + 1}": list(enumerate(c, 1)) for i, c in enumerate(curves[-8:])}
    length = min(len(c) for c in curves)
    shown[f"mean of {len(curves)} batches"] = [(step + 1, sum(c[step] for c in curves) / len(curves))
                                               for step in range(length)]
    common.plot_losses(shown, output_dir / "loss.png", "stage 1: loss per step")


def export(args) -> None:
    expect_path(args.output_dir, "folder", "stage-1 output folder", "pass the --output-dir of a stage-1 run")
    index = read_index(args.output_dir)
    if not index:
        raise UserValueError(f"{args.output_dir} holds no stage-1 tokens (no index-r*.json): run stage 1 with this "
                             "--output-dir first.")
    if args.export not in index:
        known = ", ".join(repr(i) for i in sorted(index)[:5]) + (", ..." if len(index) > 5 else "")
        raise UserValueError(f"--export {args.export!r}: no image with this id has tokens in {args.output_dir} "
                             f"({len(index)} have; e.g. {known}).")
    tokens, metadata = load_tokens(args.output_dir, [args.export])
    save_embedding({k: v[0] for k, v in tokens.items()}, metadata.get("stylesmith.family", ""), args.to)
    print(f"wrote {args.to}: use it as embedding:{args.to.stem}")


def train(args) -> dict:
    world = common.init_distributed(args.device)
    dataset = read_style_dataset(args.data)
    for problem in dataset.problems:
        print(f"[dataset] skipped {problem}")
    diffusion, precision = common.open_base_model(args, world)
    diffusion.allow_text_encoder_gradients()
    widths = text_encoder_widths(diffusion.clip)
    mine = dataset.examples[world.rank::world.world_size]
    done = read_index(args.output_dir) if (args.output_dir.is_dir() and not args.no_resume) else {}
    todo = [e for e in mine if e.id not in done]
    common.print_run_summary("Style tokens, stage 1: per-image inversion", args, {
        "base model": f"{common.base_model_file(args).name} ({diffusion.family}, {widths})",
        "dataset": f"{len(dataset.examples)} images, {len(dataset.styles)} styles, {len(dataset.problems)} skipped",
        "this rank": f"{len(mine)} images, {len(mine) - len(todo)} already done",
        "precision": common.precision_summary(diffusion, precision)}, world)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    shard_number = len({r["shard"] for r in done.values() if r["shard"].startswith(f"tokens-r{world.rank}-")})
    batches = [todo[i:i + args.batch_size] for i in range(0, len(todo), args.batch_size)]
    started = time.perf_counter()
    images = image_stream.image_batches([e.image for e in todo], args.resolution, args.batch_size, args.workers)
    with finishing_steps(), diffusion.training():
        invert_all(diffusion, precision, dataset, batches, images, shard_number, args, widths, world)
    seconds = time.perf_counter() - started
    world.barrier()
    if world.is_main and args.sample_steps and batches:
        index = read_index(args.output_dir)
        shown = [e for e in dataset.examples if e.id in index][:4]   # the same images, however often it resumed
        tokens, _ = load_tokens(args.output_dir, [e.id for e in shown])
        write_samples(diffusion, shown, tokens, args)
    write_text_atomic(args.output_dir / f"throughput-r{world.rank}.json", "throughput", json.dumps({
        "images": len(todo), "seconds": seconds, "images_per_minute": 60 * len(todo) / max(seconds, 1e-9),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    world.close()
    return read_index(args.output_dir)


def invert_all(diffusion, precision, dataset, batches, images, shard_number: int, args, widths, world) -> None:
    """Invert each batch and write it as the rank's next shard; a stop signal drops the batch in progress."""
    for batch, pixels in tqdm(zip(batches, images), total=len(batches), desc=f"stage 1 (rank {world.rank})",
                              disable=not batches):
        latents = diffusion.encode_images(pixels)
        ids = [e.id for e in batch]
        tokens, history = invert_batch(diffusion, precision, latents, [e.caption for e in batch], ids, args, widths)
        try:
            write_shard(args.output_dir, world.rank, shard_number, tokens,
                        {e.id: {"style": e.style, "caption": e.caption} for e in batch},
                        {"stylesmith.family": diffusion.family, "stylesmith.n_tokens": str(args.n_tokens),
                         "stylesmith.steps": str(args.steps), "stylesmith.dataset_fingerprint": dataset.fingerprint()},
                        loss_curve=history)
        except DiskFullError as e:
            raise DiskFullError(f"{e} The finished batches are kept: once there is space, run the same command "
                                "again to resume with this batch.") from e
        shard_number += 1
        if world.is_main:
            plot_loss_curves(args.output_dir)


def main(args) -> None:
    export(args) if args.export is not None else train(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args, locked_folder=lambda args: None if args.export else args.output_dir))
