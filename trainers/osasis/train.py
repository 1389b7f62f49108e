"""OSASIS one-shot style trainer (Cho et al., CVPR 2024), on an SD1.x / SDXL checkpoint or Flux.2 Klein's split files:
one style image in, one OSASIS style file out (models/osasis). The LoRA goes on the family's denoiser layers (the
UNet's attention and MLP layers, kohya names; Klein's transformer blocks, `core/families.py` lora.targets, ComfyUI's
`diffusion_model.*` names), the SPN on the family's latent channels (4; 128 for Klein).

    I_B^s  the style image                I_A^s  its photoreal counterpart (SDEdit with a photo prompt, or yours)
    I_A^c  content images (a folder, or generated from prompts by the checkpoint)

The frozen model A inverts images exactly to x_t0 (core/sampling/ddim.py): I_A^s once, content images as they are drawn
(trainers/osasis/content.py: a fresh pool every iteration by default, as the authors do). Each iteration then
runs the reverse with B = A + LoRA from t0 for a batch of content codes and for the code of I_A^s, which must
become I_B^s (trainers/osasis/step.py): at every step the SPN output is added to x_t, one DDIM step is taken,
the losses are computed on the x0 prediction (decoded by the VAE), the optimiser steps and x_t is detached:

    L = 1.0 cross-domain + 0.5 in-domain + reconstruction(style: 10 L1 + 30 CLIP [+ 10 LPIPS])

on the authors' scale (L1 on images in [-1, 1], core/osasis/losses.py). LPIPS needs the lpips package
(requirements.txt) and torchvision's VGG16 file in torch's cache; without them the start-up line and the run
summary say the reconstruction term lacks LPIPS.

The semantic code z_sem of each image is made as OSASIS Semantic Encode makes it: the style encoder's tokens in
the template (--style-encoder), or the CLIP image embedding of a models/clip_vision file (--clip-vision). One
prompt for every image would make every code the same, so one of the two is required. E, the CLIP image
encoder of the losses, is --loss-encoder, else --clip-vision, else the style encoder's backbone
(trainers/osasis/encoders.py).

    python -m trainers.osasis.train --checkpoint sd15.safetensors --style style.png --style-encoder enc.safetensors \\
        --output-dir out/
    python -m trainers.osasis.train --checkpoint sdxl.safetensors --style style.png --resolution 1024 \\
        --clip-vision models/clip_vision/clip_vit_l.safetensors --output-dir out/
    python -m trainers.osasis.train --diffusion-model flux-2-klein-4b.safetensors --text-encoder qwen_3_4b.safetensors \\
        --vae flux2-vae.safetensors --style style.png --style-encoder qwen3-4b-enc.safetensors --output-dir out/
"""
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from core.data.image_folder import load_image_file
from core.families import get_family
from core.lora.adapters import LoRASet
from core.osasis.losses import to_signed
from core.osasis.semantics import DEFAULT_PLACEHOLDER, DEFAULT_TEMPLATE, describe_code
from core.formats.osasis_style_file import OsasisStyle, save_osasis_style
from core.formats.safe_files import file_sha256
from core.osasis.spn import StructurePreservingNetwork

from .. import cli, common
from .content import NEGATIVE, ContentPool
from .encoders import load_encoders, loss_encoder_description
from .step import Encoded, OsasisStep, invert_all, resize_images, reverse_iteration, stylise
from ..styleforge import UNET_TARGETS, lora_tensors
from ..training_loop import TrainingLoop

DEFAULT_CONTENT_PROMPTS = ["a photo of a house by a lake", "a portrait photo of a woman",
                           "a photo of a city street", "a photo of mountains at sunrise"]
THUMBNAIL = 128


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_base_model_args(p)
    p.add_argument("--name", default="osasis_style", help="file name of the style (OUTPUT_DIR/NAME.safetensors)")
    d = p.add_argument_group("images")
    d.add_argument("--style", type=Path, required=True, help="the one style image")
    d.add_argument("--style-photo", type=Path, help="its photoreal counterpart (default: made by SDEdit)")
    d.add_argument("--photo-prompt", default="a photo, realistic, natural colors", help="SDEdit prompt")
    d.add_argument("--sdedit-strength", type=float, default=0.5, help="SDEdit denoise (paper: 0.5)")
    d.add_argument("--sdedit-candidates", type=int, default=4, help="SDEdit tries; the closest (L1) is kept")
    d.add_argument("--content", type=Path, help="folder of content images (default: generated from prompts)")
    d.add_argument("--content-prompt", action="append", default=[], help="prompt of a generated content image")
    d.add_argument("--content-pool", type=int, default=8, help="content images inverted together (authors: 8)")
    d.add_argument("--refresh-every", type=int, default=1,
                   help="draw a fresh content pool every N iterations (authors: 1, new content every iteration)")
    d.add_argument("--workers", type=int, default=2, help="processes decoding content images from --content")
    d.add_argument("--sampler-steps", type=int, default=20, help="sampler steps of SDEdit and generated content")
    d.add_argument("--resolution", type=int, default=512, help="training resolution in pixels (square crops)")
    d.add_argument("--loss-resolution", type=int, default=224, help="x0 predictions are decoded at this size for "
                                                                     "the losses (CLIP sees 224 px)")
    s = p.add_argument_group("semantic code and loss encoder")
    s.add_argument("--style-encoder", type=Path, help="style encoder (models/style_encoders): z_sem is its tokens "
                                                       "in --template")
    s.add_argument("--clip-vision", type=Path, help="CLIP vision model (models/clip_vision): z_sem is its image "
                                                     "embedding when no --style-encoder is given; also E")
    s.add_argument("--loss-encoder", type=Path, help="E, the CLIP image encoder of the losses: a models/clip_vision "
                                                      "or models/style_encoders file (default: --clip-vision, else "
                                                      "the style encoder's backbone)")
    s.add_argument("--template", default=DEFAULT_TEMPLATE, help="text the style tokens are placed in")
    s.add_argument("--placeholder", default=DEFAULT_PLACEHOLDER, help="the template's placeholder word")
    m = p.add_argument_group("method")
    m.add_argument("--t0", type=float, default=0.5, help="inversion depth as a fraction of the schedule")
    m.add_argument("--ddim-steps", type=int, default=50, help="steps of the whole schedule (paper: 50)")
    m.add_argument("--scheduler", default="normal", help="ComfyUI scheduler name of the schedule")
    m.add_argument("--inversion-iterations", type=int, default=3, help="fixed-point refinements per inversion step")
    m.add_argument("--spn-weight", type=float, default=0.1, help="weight of the SPN output added to x_t")
    m.add_argument("--spn-lr", type=float, default=1e-4, help="learning rate of the SPN (paper: 1e-4)")
    m.add_argument("--rank", type=int, default=8, help="LoRA rank")
    m.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank)")
    m.add_argument("--batch-size", type=int, default=8, help="content images per iteration (authors: 8)")
    m.add_argument("--cross-weight", type=float, default=1.0, help="weight of the cross-domain loss")
    m.add_argument("--in-weight", type=float, default=0.5, help="weight of the in-domain loss")
    m.add_argument("--save-dtype", choices=["fp16", "fp32"], default="fp16", help="dtype of the written LoRA")
    common.add_common_args(p, steps=200, lr=1e-4, save_every=50, steps_help="iterations", grad_accum=False)
    args = p.parse_args(argv)
    common.check_common_args(p, args)
    common.check_base_model_args(p, args)
    if not 0 < args.t0 <= 1:
        p.error(f"--t0 must be in (0, 1] (a fraction of the schedule); got {args.t0}")
    if not 0 < args.sdedit_strength <= 1:
        p.error(f"--sdedit-strength must be in (0, 1]; got {args.sdedit_strength}")
    if not (args.style_encoder or args.clip_vision):
        p.error("OSASIS needs a semantic code z_sem for each image: pass --style-encoder (a models/style_encoders "
                "file; its tokens in --template are z_sem) or --clip-vision (a models/clip_vision file as wide as a "
                "text encoder of the checkpoint: ViT-L/14 for SD1.x; ViT-L/14 or ViT-bigG/14 for SDXL; its image "
                "embedding is z_sem; Flux.2 Klein and Z-Image take a style encoder only). One prompt for every image would give every image the same code.")
    for flag in ("resolution", "loss_resolution"):
        if getattr(args, flag) < 64 or getattr(args, flag) % 8:
            p.error(f"--{flag.replace('_', '-')} must be a multiple of 8, at least 64 (got {getattr(args, flag)})")
    if min(args.rank, args.batch_size, args.ddim_steps, args.sdedit_candidates, args.sampler_steps, args.content_pool,
           args.refresh_every) < 1 or args.workers < 0:
        p.error("--rank, --batch-size, --ddim-steps, --sdedit-candidates, --sampler-steps, --content-pool and "
                "--refresh-every must be at least 1, --workers at least 0")
    args.alpha = float(args.rank) if args.alpha is None else args.alpha
    args.loss_resolution = min(args.loss_resolution, args.resolution)
    args.content_prompt = args.content_prompt or ([] if args.content else DEFAULT_CONTENT_PROMPTS)
    return args


@dataclass
class Images:
    style: torch.Tensor      # I_B^s (1, H, W, 3)
    photo: torch.Tensor      # I_A^s
    photo_source: dict


def photoreal_counterpart(diffusion, style: torch.Tensor, args) -> tuple[torch.Tensor, dict]:
    """SDEdit candidates of the style image with a photo prompt; the one closest to it (L1) is kept."""
    if args.style_photo:
        return load_image_file(args.style_photo, args.resolution, "photoreal counterpart"), {
            "source": "file", "file": args.style_photo.name}
    candidates = diffusion.img2img(style.expand(args.sdedit_candidates, -1, -1, -1), args.photo_prompt, NEGATIVE,
                                   args.sdedit_strength, args.sampler_steps, args.seed)
    best = int((candidates - style).abs().flatten(1).mean(1).argmin())
    return candidates[best:best + 1], {"source": "sdedit", "prompt": args.photo_prompt,
                                       "strength": args.sdedit_strength, "candidates": args.sdedit_candidates}


def load_images(diffusion, args) -> Images:
    style = load_image_file(args.style, args.resolution, "style image")
    return Images(style, *photoreal_counterpart(diffusion, style, args))


def lpips_if_available():
    """(LPIPS on IMAGE batches in [0, 1], state) with the lpips package and torchvision's VGG16 file from torch's
    cache (never downloaded); (None, state) if either is missing, the state saying the reconstruction lacks it."""
    from core.evaluation.metric_lpips import load_lpips
    from core.evaluation.weights import MetricUnavailable
    try:
        metric = load_lpips("vgg").metric
    except MetricUnavailable as missing:
        return None, (f"off: the reconstruction term lacks LPIPS ({missing}); install the lpips package and put "
                      f"torchvision's vgg16-397923af.pth in {torch.hub.get_dir()}/checkpoints")
    return (lambda a, b: metric.to(a.device)(to_signed(a.permute(0, 3, 1, 2)), to_signed(b.permute(0, 3, 1, 2)))), \
        "on (VGG16)"


@dataclass
class TrainResult:
    diffusion: object
    lora: LoRASet
    spn: StructurePreservingNetwork
    style_path: Path
    history: dict
    images: Images
    content: Encoded          # the last content pool
    photo: Encoded            # I_A^s, inverted
    sigmas: torch.Tensor
    timesteps: torch.Tensor


def style_file_writer(args, diffusion, lora: LoRASet, spn, images: Images, semantic: dict, loop: TrainingLoop):
    """save(step): the OSASIS style file as it stands after `step` iterations, and the loss curves."""
    checkpoint_hash = file_sha256(common.base_model_file(args))
    thumbnails = {name: (resize_images(image, THUMBNAIL)[0].clamp(0, 1) * 255).round().to(torch.uint8)
                  for name, image in (("style", images.style), ("photo", images.photo))}
    dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32

    def save(step: int) -> None:
        save_osasis_style(OsasisStyle(
            lora=lora_tensors(diffusion, nn.ModuleDict({"unet": lora}), dtype), spn=spn, family=diffusion.family,
            t0=args.t0, steps=args.ddim_steps, scheduler=args.scheduler, spn_weight=args.spn_weight,
            semantic=semantic, reference={"style": args.style.name, "style_sha256": file_sha256(args.style),
                                          "photo": images.photo_source},
            thumbnails=thumbnails, base_checkpoint=common.base_model_file(args).name, base_checkpoint_sha256=checkpoint_hash,
            training=dict(loop.config, steps_done=step)), args.output_dir / f"{args.name}.safetensors")
        common.plot_losses(loop.history, args.output_dir / "loss.png", f"{args.name}: OSASIS losses per iteration")
    return save


def write_samples(diffusion, lora, spn, images: Images, content: Encoded, sigmas, timesteps, args) -> None:
    shown = content[slice(0, min(4, content.code.shape[0]))]
    latents = stylise(diffusion, lora, spn, shown, sigmas, timesteps, args.spn_weight)
    with torch.no_grad():
        before, after = diffusion.decode_latents(shown.clean).cpu(), diffusion.decode_latents(latents).cpu()
    common.save_image_grid({"style image | photoreal counterpart": torch.cat([images.style, images.photo]),
                            "content (before)": before,
                            f"stylised (after {args.steps} iterations)": after}, args.output_dir / "samples.png")
    print(f"OSASIS style: {args.output_dir / args.name}.safetensors\n"
          f"pictures: {args.output_dir / 'loss.png'}, {args.output_dir / 'samples.png'}")


def train(args) -> TrainResult:
    world = common.init_distributed(args.device)
    diffusion, precision = common.open_base_model(args, world)
    code, encode = load_encoders(diffusion, args)
    lpips, lpips_state = lpips_if_available()
    if lpips is None and world.is_main:
        print(f"OSASIS: LPIPS {lpips_state}", flush=True)
    images = load_images(diffusion, args)
    from comfy_adapter.bridge import structure_sigmas
    sigmas = structure_sigmas(diffusion.model, args.scheduler, args.ddim_steps, args.t0).double()
    timesteps = diffusion.unet.model_sampling.timestep(sigmas.float()).to(world.device)

    def invert(x: torch.Tensor, desc: str) -> Encoded:
        return invert_all(diffusion, x, code.codes(x), sigmas,
                          args.inversion_iterations, args.loss_resolution, desc)

    torch.manual_seed(args.seed)
    family = get_family(diffusion.family)
    lora = LoRASet(diffusion.unet_module, family.lora.targets or UNET_TARGETS, args.rank, args.alpha).to(world.device)
    spn = StructurePreservingNetwork(family.latent_channels).to(world.device)
    pool = ContentPool(diffusion, lora, args, invert)
    common.print_run_summary("OSASIS", args, {
        "base model": f"{common.base_model_file(args).name} ({diffusion.family})",
        "images": f"style {args.style.name}, photoreal counterpart from {images.photo_source['source']}",
        "content": f"{pool.describe()}, {args.batch_size} per iteration",
        "schedule": f"t0={args.t0}: {len(sigmas) - 1} of {args.ddim_steps} {args.scheduler} steps per iteration",
        "semantic code": describe_code(code.metadata), "loss encoder": loss_encoder_description(args),
        "LPIPS": lpips_state, "precision": common.precision_summary(diffusion, precision)}, world)
    photo = invert(images.photo, "inverting the photoreal counterpart")
    optimizer = torch.optim.Adam([{"params": lora.parameters(), "lr": args.lr},
                                  {"params": spn.parameters(), "lr": args.spn_lr}])
    loop = TrainingLoop(args, world, precision, optimizer, {"lora": lora, "spn": spn})
    step_module = OsasisStep(diffusion, lora, spn, encode, lpips, images.style, images.photo, args)
    lora.attach()

    def iteration(i: int) -> dict[str, float]:
        content = pool.batch(i, common.step_generator(args.seed, i, world.rank))
        with diffusion.training():
            return reverse_iteration(loop, step_module, content, photo, sigmas, timesteps)

    save = style_file_writer(args, diffusion, lora, spn, images, code.metadata, loop) if world.is_main else None
    history = loop.run(args.steps, iteration, "OSASIS", save)
    content = pool.at(max(args.steps, 1) - 1)
    if world.is_main and loop.start < args.steps:
        write_samples(diffusion, lora, spn, images, content, sigmas, timesteps, args)
    world.barrier()
    world.close()
    return TrainResult(diffusion, lora, spn, args.output_dir / f"{args.name}.safetensors", history, images, content,
                       photo, sigmas, timesteps)


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    sys.exit(cli.run(main, parse_args))
