"""The image encoders of the OSASIS trainer: the semantic code z_sem of each image, and E, the CLIP image encoder
of the losses.

z_sem is made exactly as OSASIS Semantic Encode makes it, so a style decodes in ComfyUI with the code it was
trained with:
- --style-encoder: the encoder's tokens in place of the template's placeholder, through the text encoder;
- else --clip-vision: the CLIP image embedding, from the file as ComfyUI's Load CLIP Vision loads it
  (comfy_adapter/clip_vision.py).
E is --loss-encoder, else --clip-vision, else the style encoder's backbone: a differentiable module (our open_clip
port of a CLIP vision file, or a style encoder), since the losses back-propagate through it.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.data.image_preprocess import preprocess
from core.formats.style_encoder_file import is_style_encoder_file, load_style_encoder

from comfy_adapter.diffusion import encode_prompt_with_style

Code = tuple[torch.Tensor, torch.Tensor]      # (cond, pooled) of one image


@dataclass
class SemanticCode:
    codes: Callable[[torch.Tensor], list[Code]]   # IMAGE batch -> z_sem of each image
    metadata: dict                                # stylesmith.semantic of the style file (docs/formats.md)


def load_encoders(diffusion, args) -> tuple[SemanticCode, Callable[[torch.Tensor], torch.Tensor]]:
    """(z_sem, E: IMAGE batch -> CLIP features, differentiable in the images); a style encoder serving both is
    loaded once."""
    style_encoder = load_style_encoder(args.style_encoder).to(diffusion.device) if args.style_encoder else None
    code = (style_encoder_code(diffusion, style_encoder, args) if style_encoder is not None
            else clip_vision_semantic_code(diffusion, args.clip_vision))
    path = loss_encoder_path(args)
    clip = style_encoder if path == args.style_encoder else differentiable_encoder(path, diffusion.family)
    clip = clip.to(diffusion.device).requires_grad_(False).eval()
    return code, lambda images: clip.features(preprocess(images, clip.config.preprocess).to(diffusion.device))


def loss_encoder_path(args) -> Path:
    return args.loss_encoder or args.clip_vision or args.style_encoder


def loss_encoder_description(args) -> str:
    path = loss_encoder_path(args)
    return f"the backbone of {path.name}" if path == args.style_encoder else path.name


def style_encoder_code(diffusion, style_encoder, args) -> SemanticCode:
    def codes(images: torch.Tensor) -> list[Code]:
        with torch.no_grad():
            pixels = preprocess(images, style_encoder.config.preprocess).to(diffusion.device)
            return [encode_prompt_with_style(diffusion, args.template, {k: v[0] for k, v in style_encoder(
                pixels[i:i + 1]).items()}, args.placeholder) for i in range(images.shape[0])]
    return SemanticCode(codes, {"source": "style_encoder", "file": args.style_encoder.name, "template": args.template,
                                "placeholder": args.placeholder})


def clip_vision_semantic_code(diffusion, path: Path) -> SemanticCode:
    from comfy_adapter.clip_vision import clip_vision_code, load_clip_vision
    from core.families import get_family
    clip_vision, family = load_clip_vision(path), get_family(diffusion.family)

    def codes(images: torch.Tensor) -> list[Code]:
        with torch.no_grad():
            return [tuple(t.to(diffusion.device) for t in clip_vision_code(clip_vision, images[i:i + 1], family))
                    for i in range(images.shape[0])]
    return SemanticCode(codes, {"source": "clip_vision", "file": path.name})


def differentiable_encoder(path: Path, family: str):
    """A style encoder, or our open_clip port of a CLIP vision file (no heads), from `path`."""
    if is_style_encoder_file(path):
        return load_style_encoder(path)
    from core.formats.clip_vision_import import style_encoder_from_clip_vision_file
    return style_encoder_from_clip_vision_file(path, family, {})
