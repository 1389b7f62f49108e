"""Style tokens, stage 3 (Chang, DESIGN §5.1): joint fine-tuning of encoder and projection heads with the
diffusion loss, through the frozen text encoder and UNet:

    min_{E, heads}  E_{x, t, eps} || f_theta(z_t, t, TE(caption[sks -> heads(E(x))])) - target(eps, z_0, t) ||^2

with the base model's own objective as in stage 1 (eps prediction on SD1.x / SDXL, flow matching on Flux.2 Klein and
Z-Image: comfy_adapter/objective.py).

Unlike the authors' script, the text encoder really runs (its pass was commented out there), and the VAE
encodes the image at the training resolution, not the 224-px encoder tensor. Paper defaults: AdamW lr 2e-4,
cosine schedule, batch 8, 5 epochs. Writes OUTPUT_DIR/style_encoder.safetensors, loss.png,
embedding_map.png and samples.png (reference images beside images generated from their style tokens).

    python -m trainers.style_tokens.stage3 --checkpoint sd15.safetensors --data manifest.jsonl \\
        --encoder stage2/style_encoder.safetensors --output-dir stage3/
"""
import argparse
import math
import sys
from pathlib import Path

import torch

from core.data.image_preprocess import preprocess
from core.data.image_stream import image_batches, indexed_batches, load_images
from core.data.style_dataset import read_style_dataset
from core.formats.style_encoder_file import load_style_encoder, save_style_encoder
from core.style_tokens.injection import check_widths

from comfy_adapter.batch_conditioning import encode_prompts_with_style
from comfy_adapter.diffusion import encode_prompt_with_style
from comfy_adapter.families import text_encoder_widths
from .. import cli, common
from ..training_loop import TrainingLoop


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_base_model_args(p)
    p.add_argument("--data", type=Path, required=True, help="manifest or Style30K-style folder")
    p.add_argument("--encoder", type=Path, required=True, help="the stage-2 style encoder to fine-tune")
    p.add_argument("--resolution", type=int, default=512, help="VAE resolution of the training images")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (per rank)")
    p.add_argument("--epochs", type=float, default=5, help="passes over the data (paper: 5)")
    p.add_argument("--placeholder", default="sks", help="the caption word the tokens replace")
    p.add_argument("--sample-steps", type=int, default=20, help="sampler steps of samples.png (0: none)")
    p.add_argument("--workers", type=int, default=2, help="processes decoding images ahead of training")
    common.add_common_args(p, steps=0, lr=2e-4, save_every=200, steps_help="optimiser steps; 0: from --epochs",
                           grad_accum=False)
    args = p.parse_args(argv)
    common.check_common_args(p, args, zero_steps_means="steps from --epochs")
    common.check_base_model_args(p, args)
    if args.resolution < 64 or args.resolution % 8 or args.batch_size < 1 or args.sample_steps < 0:
        p.error("--resolution must be a multiple of 8 of at least 64, --batch-size at least 1, --sample-steps >= 0")
    return args


def style_loss(diffusion, encoder, pixels, latents, captions, placeholder, generator) -> torch.Tensor:
    """The batch's mean diffusion loss: one encoder pass, one text-encoder pass and one UNet pass for the batch.
    Rows draw their noise, then their timesteps, from `generator` in turn."""
    cond, pooled = encode_prompts_with_style(diffusion, captions, encoder(pixels), placeholder)
    return diffusion.diffusion_losses(latents, cond, pooled, [generator] * len(captions)).mean()


def write_samples(diffusion, encoder, examples, args) -> None:
    shown = examples[:4]
    images = load_images([e.image for e in shown], args.resolution, args.workers)
    with torch.no_grad():
        tokens = encoder(preprocess(images, encoder.config.preprocess).to(diffusion.device))
        conditions = [encode_prompt_with_style(diffusion, e.caption, {k: v[n] for k, v in tokens.items()},
                                               args.placeholder) for n, e in enumerate(shown)]
    generated = diffusion.sample_conditioned(conditions, "blurry, low quality", min(args.resolution, 512),
                                             args.sample_steps, args.seed)
    common.save_image_grid({"reference": images, "generated from its style tokens": generated},
                           args.output_dir / "samples.png")


@torch.no_grad()
def all_features(encoder, examples, workers: int) -> torch.Tensor:
    device = next(encoder.parameters()).device
    return torch.cat([encoder.features(preprocess(images, encoder.config.preprocess).to(device)).cpu()
                      for images in image_batches([e.image for e in examples], encoder.config.preprocess.size, 32,
                                                  workers)])


def write_results(diffusion, encoder, examples, dataset, history: dict, steps: int, args) -> None:
    encoder.config.training = {"stage": 3, "steps": steps, "dataset_fingerprint": dataset.fingerprint(),
                               "from": args.encoder.name}
    save_style_encoder(encoder, args.output_dir / "style_encoder.safetensors")
    common.plot_losses(history, args.output_dir / "loss.png", "stage 3: joint fine-tuning")
    common.plot_embedding_map(all_features(encoder, examples, args.workers), [e.style for e in examples],
                              args.output_dir / "embedding_map.png", "stage 3 encoder features (PCA), by style")
    if args.sample_steps:
        write_samples(diffusion, encoder, examples, args)
    print(f"encoder: {args.output_dir / 'style_encoder.safetensors'}")


def train(args) -> None:
    world = common.init_distributed(args.device)
    dataset = read_style_dataset(args.data)
    diffusion, precision = common.open_base_model(args, world)
    diffusion.allow_text_encoder_gradients()
    encoder = load_style_encoder(args.encoder).requires_grad_(True).to(world.device)
    check_widths(encoder.config.heads, text_encoder_widths(diffusion.clip), encoder.config.family, diffusion.family)
    examples = dataset.examples
    steps = args.steps or max(1, math.ceil(args.epochs * len(examples) / (args.batch_size * world.world_size)))
    common.print_run_summary("Style tokens, stage 3: joint fine-tuning", args, {
        "base model": f"{common.base_model_file(args).name} ({diffusion.family})", "encoder": args.encoder.name,
        "data": f"{len(examples)} images, {len(dataset.styles)} styles", "steps": steps,
        "precision": common.precision_summary(diffusion, precision)}, world)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=args.lr)
    loop = TrainingLoop(args, world, precision, optimizer, {"model": encoder},
                        schedule=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps))

    def pick(step: int) -> list[int]:
        """This rank's rows of step `step`: the step's global batch is a function of (seed, step)."""
        batch = torch.randperm(len(examples), generator=common.step_generator(args.seed, step))
        return batch[:args.batch_size * world.world_size][world.rank::world.world_size].tolist()

    images = indexed_batches([e.image for e in examples], args.resolution,
                             (pick(step) for step in range(loop.start, steps)), args.workers)

    def micro_step(step: int):
        batch, x = pick(step), next(images)
        loss = style_loss(diffusion, encoder, preprocess(x, encoder.config.preprocess).to(world.device),
                          diffusion.encode_images(x), [examples[i].caption for i in batch], args.placeholder,
                          common.step_generator(args.seed, step, world.rank))
        return loss, {"diffusion loss": loss.item()}

    encoder.train()
    with diffusion.training():
        history = loop.run(steps, lambda step: loop.accumulated_step(lambda: micro_step(step)), "stage 3")
    encoder.eval()
    if world.is_main:
        write_results(diffusion, encoder, examples, dataset, history, steps, args)
    world.barrier()
    world.close()


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args))
