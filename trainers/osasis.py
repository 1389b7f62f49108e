"""OSASIS one-shot style trainer (Cho et al., CVPR 2024), on an SD1.x / SDXL checkpoint: one style image
in, one OSASIS style file out (models/osasis).

    I_B^s  the style image                I_A^s  its photoreal counterpart (SDEdit with a photo prompt, or yours)
    I_A^c  content images (a folder, or generated from prompts by the checkpoint)

Every image is inverted once, exactly, to x_t0 with the frozen model A (core/ddim.py). Each iteration
then runs the reverse with B = A + LoRA from t0: at every step the SPN output is added to x_t, one DDIM
step is taken, the losses are computed on the x0 prediction (decoded by the VAE), the optimiser steps
and x_t is detached:

    L = 1.0 cross-domain + 0.5 in-domain + reconstruction(style: 10 L1 + 30 CLIP [+ 10 LPIPS])

E, the CLIP image encoder of the losses, is a CLIP vision model from models/clip_vision (--clip-vision)
or the style encoder's backbone. The semantic code z_sem of each image is the style encoder's tokens in
the template (as OSASIS Semantic Encode makes it), or, without a style encoder, the --prompt text.

    python -m trainers.osasis --checkpoint sd15.safetensors --style style.png --style-encoder enc.safetensors \\
        --output-dir out/
"""
import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from core.clip_losses import cross_domain_loss, in_domain_loss, reconstruction_loss
from core.ddim import ddim_invert, ddim_step
from core.image_folder import load_image_file, load_image_folder
from core.image_preprocess import preprocess
from core.lora import LoRASet
from core.osasis import add_structure
from core.osasis_semantics import DEFAULT_PLACEHOLDER, DEFAULT_TEMPLATE
from core.osasis_style_file import OsasisStyle, save_osasis_style
from core.safe_files import file_sha256
from core.spn import StructurePreservingNetwork

from comfy_adapter.diffusion import encode_prompt_with_style
from . import common
from .training_loop import TrainingLoop
from .styleforge import UNET_TARGETS, lora_tensors

DEFAULT_CONTENT_PROMPTS = ["a photo of a house by a lake", "a portrait photo of a woman",
                           "a photo of a city street", "a photo of mountains at sunrise"]
NEGATIVE = "blurry, low quality"
THUMBNAIL = 128


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="your SD1.5 or SDXL .safetensors checkpoint")
    p.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: $COMFYUI_PATH or the one this pack is in)")
    p.add_argument("--name", default="osasis_style", help="file name of the style (OUTPUT_DIR/NAME.safetensors)")
    d = p.add_argument_group("images")
    d.add_argument("--style", type=Path, required=True, help="the one style image")
    d.add_argument("--style-photo", type=Path, help="its photoreal counterpart (default: made by SDEdit)")
    d.add_argument("--photo-prompt", default="a photo, realistic, natural colors", help="SDEdit prompt")
    d.add_argument("--sdedit-strength", type=float, default=0.5, help="SDEdit denoise (paper: 0.5)")
    d.add_argument("--sdedit-candidates", type=int, default=4, help="SDEdit tries; the closest (L1) is kept")
    d.add_argument("--content", type=Path, help="folder of content images (default: generated from prompts)")
    d.add_argument("--content-prompt", action="append", default=[], help="prompt of a generated content image")
    d.add_argument("--sampler-steps", type=int, default=20, help="sampler steps of SDEdit and generated content")
    d.add_argument("--resolution", type=int, default=512, help="training resolution in pixels (square crops)")
    d.add_argument("--loss-resolution", type=int, default=224, help="x0 predictions are decoded at this size for "
                                                                     "the losses (CLIP sees 224 px)")
    s = p.add_argument_group("semantic code and loss encoder")
    s.add_argument("--style-encoder", type=Path, help="style encoder (models/style_encoders) for z_sem")
    s.add_argument("--clip-vision", type=Path, help="CLIP vision model (models/clip_vision) for the losses "
                                                     "(default: the style encoder's backbone)")
    s.add_argument("--template", default=DEFAULT_TEMPLATE, help="text the style tokens are placed in")
    s.add_argument("--placeholder", default=DEFAULT_PLACEHOLDER, help="the template's placeholder word")
    s.add_argument("--prompt", default="a picture", help="z_sem of every image when there is no style encoder")
    m = p.add_argument_group("method")
    m.add_argument("--t0", type=float, default=0.5, help="inversion depth as a fraction of the schedule")
    m.add_argument("--ddim-steps", type=int, default=50, help="steps of the whole schedule (paper: 50)")
    m.add_argument("--scheduler", default="normal", help="ComfyUI scheduler name of the schedule")
    m.add_argument("--inversion-iterations", type=int, default=3, help="fixed-point refinements per inversion step")
    m.add_argument("--spn-weight", type=float, default=0.1, help="weight of the SPN output added to x_t")
    m.add_argument("--spn-lr", type=float, default=1e-4, help="learning rate of the SPN (paper: 1e-4)")
    m.add_argument("--rank", type=int, default=8, help="LoRA rank")
    m.add_argument("--alpha", type=float, help="LoRA alpha (default: the rank)")
    m.add_argument("--batch-size", type=int, default=1, help="content images per iteration (paper: 8)")
    m.add_argument("--cross-weight", type=float, default=1.0, help="weight of the cross-domain loss")
    m.add_argument("--in-weight", type=float, default=0.5, help="weight of the in-domain loss")
    m.add_argument("--save-dtype", choices=["fp16", "fp32"], default="fp16", help="dtype of the written LoRA")
    common.add_common_args(p, steps=200, lr=1e-4, save_every=50, steps_help="iterations", grad_accum=False)
    args = p.parse_args(argv)
    common.check_common_args(p, args)
    if not 0 < args.t0 <= 1:
        p.error(f"--t0 must be in (0, 1] (a fraction of the schedule); got {args.t0}")
    if not 0 < args.sdedit_strength <= 1:
        p.error(f"--sdedit-strength must be in (0, 1]; got {args.sdedit_strength}")
    if not (args.style_encoder or args.clip_vision):
        p.error("the CLIP losses need an image encoder: pass --clip-vision (a models/clip_vision file) "
                "or --style-encoder (its backbone is used)")
    for flag in ("resolution", "loss_resolution"):
        if getattr(args, flag) < 64 or getattr(args, flag) % 8:
            p.error(f"--{flag.replace('_', '-')} must be a multiple of 8, at least 64 (got {getattr(args, flag)})")
    if min(args.rank, args.batch_size, args.ddim_steps, args.sdedit_candidates, args.sampler_steps) < 1:
        p.error("--rank, --batch-size, --ddim-steps, --sdedit-candidates and --sampler-steps must be at least 1")
    args.alpha = float(args.rank) if args.alpha is None else args.alpha
    args.loss_resolution = min(args.loss_resolution, args.resolution)
    args.content_prompt = args.content_prompt or ([] if args.content else DEFAULT_CONTENT_PROMPTS)
    return args


@dataclass
class Images:
    style: torch.Tensor      # I_B^s (1, H, W, 3)
    photo: torch.Tensor      # I_A^s
    content: torch.Tensor    # I_A^c (N, H, W, 3)
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
    photo, source = photoreal_counterpart(diffusion, style, args)
    if args.content:
        content, _ = load_image_folder(args.content, args.resolution, "content images")
    else:
        content = diffusion.sample(args.content_prompt, NEGATIVE, args.resolution, args.sampler_steps, args.seed)
    return Images(style, photo, content, source)


def loss_encoder(diffusion, args):
    """(E: IMAGE -> CLIP features, the style encoder or None)."""
    style_encoder = None
    if args.style_encoder:
        from core.style_encoder_file import load_style_encoder
        style_encoder = load_style_encoder(args.style_encoder).to(diffusion.device)
    if args.clip_vision:
        from core.clip_vision_import import style_encoder_from_clip_vision
        from core.safe_files import read_safetensors
        tensors, _ = read_safetensors(args.clip_vision, "CLIP vision model")
        clip = style_encoder_from_clip_vision(tensors, diffusion.family, {}).to(diffusion.device)  # no heads: E only
        clip.requires_grad_(False).eval()
    else:
        clip = style_encoder
    return (lambda images: clip.features(preprocess(images, clip.config.preprocess).to(diffusion.device))), style_encoder


VGG16_WEIGHTS = "vgg16-397923af.pth"   # what torchvision (and so the lpips package) loads


def lpips_if_available():
    """(LPIPS on IMAGE batches, why) when the lpips package and its VGG weights are here; (None, why) if not."""
    try:
        import lpips
    except ImportError:
        return None, "off: the lpips package is not installed"
    if not (Path(torch.hub.get_dir()) / "checkpoints" / VGG16_WEIGHTS).is_file():
        return None, f"off: no VGG16 weights ({VGG16_WEIGHTS}) in {torch.hub.get_dir()}/checkpoints"
    metric = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)
    return (lambda a, b: metric.to(a.device)(a.permute(0, 3, 1, 2) * 2 - 1, b.permute(0, 3, 1, 2) * 2 - 1)), "on (VGG)"


def semantic_codes(diffusion, style_encoder, images: torch.Tensor, args) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """z_sem (cond, pooled) of each image, as OSASIS Semantic Encode computes it."""
    with torch.no_grad():
        if style_encoder is None:
            return [diffusion.encode_prompt(args.prompt)] * images.shape[0]
        pixels = preprocess(images, style_encoder.config.preprocess).to(diffusion.device)
        return [encode_prompt_with_style(diffusion, args.template, {k: v[0] for k, v in style_encoder(
            pixels[i:i + 1]).items()}, args.placeholder) for i in range(images.shape[0])]


@dataclass
class Encoded:
    """Everything per image that the frozen model A fixes once: latents, z_sem, UNet inputs, x_t0."""
    clean: torch.Tensor
    inputs: list[dict]
    code: torch.Tensor


def invert_all(diffusion, latents: torch.Tensor, codes, sigmas, iterations: int, desc: str) -> Encoded:
    inputs = [diffusion.model_inputs(cond, pooled, latents[i:i + 1]) for i, (cond, pooled) in enumerate(codes)]
    out = []
    with torch.no_grad():
        for i in tqdm(range(latents.shape[0]), desc=desc):
            out.append(ddim_invert(latents[i:i + 1], sigmas, lambda x, s, i=i: diffusion.eps(x, s, inputs[i]),
                                   iterations))
    return Encoded(latents, inputs, torch.cat(out))


def stack_inputs(inputs: list[dict]) -> dict:
    return {k: torch.cat([d[k] for d in inputs]) for k in inputs[0]}


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """IMAGE batch (N, H, W, 3) -> (N, size, size, 3), bilinear with antialiasing."""
    return torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True).permute(0, 2, 3, 1)


class OsasisStep(nn.Module):
    """The trainable LoRA and SPN, and one reverse step with its losses.

    Content and style codes run as two passes, each followed by its own backward: their losses do not
    mix (the directional terms need the content, the reconstruction the style), so the gradients are the
    same as in one pass while the activations held for backward are halved.
    """

    def __init__(self, diffusion, lora: LoRASet, spn: StructurePreservingNetwork, encode, lpips, images: Images, args):
        super().__init__()
        self.lora, self.spn = lora, spn
        self.diffusion, self.encode, self.lpips, self.args = diffusion, encode, lpips, args
        size, device = args.loss_resolution, diffusion.device
        self.style, self.photo = resize_images(images.style, size).to(device), resize_images(images.photo, size).to(device)
        self.content = resize_images(images.content, size).to(device)

    def _decoded_x0(self, x, clean, inputs, sigma_a: float, sigma_b: float, timestep):
        x = add_structure(x, self.spn, clean, timestep, self.args.spn_weight)
        x_next, x0 = ddim_step(x, sigma_a, sigma_b, lambda x_in, s: self.diffusion.eps(x_in, s, inputs))
        return x_next, self.diffusion.decode_latents(x0, self.args.loss_resolution)

    def content_step(self, x, clean, inputs, content_index: torch.Tensor, sigma_a: float, sigma_b: float, timestep):
        """(x at sigma_b, weighted loss, parts) for content codes x."""
        x_next, stylised = self._decoded_x0(x, clean, inputs, sigma_a, sigma_b, timestep)
        n = x.shape[0]
        fixed = (self.content[content_index], self.style.expand(n, -1, -1, -1), self.photo.expand(n, -1, -1, -1))
        parts = {"cross-domain": cross_domain_loss(self.encode, stylised, *fixed),
                 "in-domain": in_domain_loss(self.encode, stylised, *fixed)}
        return x_next, self.args.cross_weight * parts["cross-domain"] + self.args.in_weight * parts["in-domain"], parts

    def style_step(self, x, clean, inputs, sigma_a: float, sigma_b: float, timestep):
        """(x at sigma_b, reconstruction loss) for the style code x."""
        x_next, reconstruction = self._decoded_x0(x, clean, inputs, sigma_a, sigma_b, timestep)
        return x_next, reconstruction_loss(self.encode, reconstruction, self.style, self.lpips)


@dataclass
class TrainResult:
    diffusion: object
    lora: LoRASet
    spn: StructurePreservingNetwork
    style_path: Path
    history: dict
    images: Images
    content: Encoded
    sigmas: torch.Tensor
    timesteps: torch.Tensor


def stylise(diffusion, lora: LoRASet, spn, content: Encoded, sigmas, timesteps, spn_weight: float) -> torch.Tensor:
    """Model-space latents of the content codes decoded by B with the SPN: what OSASIS Decode computes."""
    from core.osasis import osasis_decode
    lora.attach()
    with torch.no_grad():
        return torch.cat([osasis_decode(content.code[i:i + 1], sigmas,
                                        lambda x, s, i=i: diffusion.eps(x, s, content.inputs[i]),
                                        spn, content.clean[i:i + 1], timesteps, spn_weight)
                          for i in range(content.code.shape[0])])


def reverse_iteration(loop: TrainingLoop, step_module: OsasisStep, content: Encoded, style: Encoded, sigmas, timesteps,
                      picked: torch.Tensor) -> dict[str, float]:
    """One iteration: B runs the reverse from x_t0 for the picked content codes and for the style code, with an
    optimiser step at every reverse step (then x_t is detached); returns each loss averaged over the steps."""
    device = loop.world.device
    x_content, x_style = content.code[picked], style.code
    inputs = stack_inputs([content.inputs[i] for i in picked.tolist()])
    totals, n = {}, len(sigmas) - 1
    for k in range(n):
        sigma_a, sigma_b, t = float(sigmas[k]), float(sigmas[k + 1]), timesteps[k]
        with loop.precision.autocast():
            x_content, content_loss, parts = step_module.content_step(
                x_content, content.clean[picked], inputs, picked.to(device), sigma_a, sigma_b, t)
        loop.backward(content_loss)
        with loop.precision.autocast():
            x_style, parts["reconstruction"] = step_module.style_step(x_style, style.clean, style.inputs[0],
                                                                      sigma_a, sigma_b, t)
        loop.backward(parts["reconstruction"])
        loop.optimiser_step()
        x_content, x_style = x_content.detach(), x_style.detach()
        parts["total"] = content_loss + parts["reconstruction"]
        for name, value in parts.items():
            totals[name] = totals.get(name, 0.0) + value.item() / n
    return totals


def style_file_writer(args, diffusion, lora: LoRASet, spn, images: Images, style_encoder, loop: TrainingLoop):
    """save(step): the OSASIS style file as it stands after `step` iterations, and the loss curves."""
    checkpoint_hash = file_sha256(args.checkpoint)
    semantic = ({"source": "style_encoder", "file": args.style_encoder.name, "template": args.template,
                 "placeholder": args.placeholder} if style_encoder else {"source": "prompt", "prompt": args.prompt})
    thumbnails = {name: (resize_images(image, THUMBNAIL)[0].clamp(0, 1) * 255).round().to(torch.uint8)
                  for name, image in (("style", images.style), ("photo", images.photo))}
    dtype = torch.float16 if args.save_dtype == "fp16" else torch.float32

    def save(step: int) -> None:
        save_osasis_style(OsasisStyle(
            lora=lora_tensors(diffusion, nn.ModuleDict({"unet": lora}), dtype), spn=spn, family=diffusion.family,
            t0=args.t0, steps=args.ddim_steps, scheduler=args.scheduler, spn_weight=args.spn_weight,
            semantic=semantic, reference={"style": args.style.name, "style_sha256": file_sha256(args.style),
                                          "photo": images.photo_source},
            thumbnails=thumbnails, base_checkpoint=args.checkpoint.name, base_checkpoint_sha256=checkpoint_hash,
            training=dict(loop.config, steps_done=step)), args.output_dir / f"{args.name}.safetensors")
        common.plot_losses(loop.history, args.output_dir / "loss.png", f"{args.name}: OSASIS losses per iteration")
    return save


def write_samples(diffusion, lora, spn, images: Images, content: Encoded, sigmas, timesteps, args) -> None:
    shown = slice(0, min(4, content.code.shape[0]))
    latents = stylise(diffusion, lora, spn, Encoded(content.clean[shown], content.inputs[shown], content.code[shown]),
                      sigmas, timesteps, args.spn_weight)
    with torch.no_grad():
        after = diffusion.decode_latents(latents).cpu()
    common.save_image_grid({"style image | photoreal counterpart": torch.cat([images.style, images.photo]),
                            "content (before)": images.content[shown],
                            f"stylised (after {args.steps} iterations)": after}, args.output_dir / "samples.png")
    print(f"OSASIS style: {args.output_dir / args.name}.safetensors\n"
          f"pictures: {args.output_dir / 'loss.png'}, {args.output_dir / 'samples.png'}")


def train(args) -> TrainResult:
    world = common.init_distributed(args.device)
    diffusion, precision = common.open_base_model(args, world)
    encode, style_encoder = loss_encoder(diffusion, args)
    lpips, lpips_state = lpips_if_available()
    images = load_images(diffusion, args)
    from comfy_adapter.bridge import structure_sigmas
    sigmas = structure_sigmas(diffusion.model, args.scheduler, args.ddim_steps, args.t0).double()
    timesteps = diffusion.unet.model_sampling.timestep(sigmas.float()).to(world.device)
    common.print_run_summary("OSASIS", args, {
        "checkpoint": f"{args.checkpoint.name} ({diffusion.family})",
        "images": f"style {args.style.name}, photoreal counterpart from {images.photo_source['source']}, "
                  f"{images.content.shape[0]} content images",
        "schedule": f"t0={args.t0}: {len(sigmas) - 1} of {args.ddim_steps} {args.scheduler} steps per iteration",
        "semantic code": f"style encoder in {args.template!r}" if style_encoder else f"prompt {args.prompt!r}",
        "loss encoder": args.clip_vision.name if args.clip_vision else "the style encoder's backbone",
        "LPIPS": lpips_state, "precision": common.precision_summary(diffusion, precision)}, world)
    content, style = (invert_all(diffusion, diffusion.encode_images(x), semantic_codes(diffusion, style_encoder, x, args),
                                 sigmas, args.inversion_iterations, f"inverting {name}")
                      for name, x in (("content", images.content), ("style", images.style)))
    torch.manual_seed(args.seed)
    lora = LoRASet(diffusion.unet_module, UNET_TARGETS, args.rank, args.alpha).to(world.device)
    spn = StructurePreservingNetwork(diffusion.unet.latent_format.latent_channels).to(world.device)
    optimizer = torch.optim.Adam([{"params": lora.parameters(), "lr": args.lr},
                                  {"params": spn.parameters(), "lr": args.spn_lr}])
    loop = TrainingLoop(args, world, precision, optimizer, {"lora": lora, "spn": spn})
    step_module = OsasisStep(diffusion, lora, spn, encode, lpips, images, args)
    lora.attach()

    def iteration(i: int) -> dict[str, float]:
        generator = common.step_generator(args.seed, i, world.rank)
        picked = torch.randint(0, content.code.shape[0], (args.batch_size,), generator=generator)
        return reverse_iteration(loop, step_module, content, style, sigmas, timesteps, picked)

    save = style_file_writer(args, diffusion, lora, spn, images, style_encoder, loop) if world.is_main else None
    history = loop.run(args.steps, iteration, "OSASIS", save)
    if world.is_main and loop.start < args.steps:
        write_samples(diffusion, lora, spn, images, content, sigmas, timesteps, args)
    world.barrier()
    world.close()
    return TrainResult(diffusion, lora, spn, args.output_dir / f"{args.name}.safetensors", history, images, content,
                       sigmas, timesteps)


def main(args) -> None:
    train(args)


if __name__ == "__main__":
    main(parse_args())
