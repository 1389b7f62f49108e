"""OSASIS content/style mixing over UNet levels or transformer blocks (Cho et al., CVPR 2024, Sec. 4.4).

In the original, z_style drives the high-resolution levels of the decoder and z_content the
low-resolution levels and the middle block. Our semantic codes are cross-attention contexts, so
mixing means: at each attention layer, attend to a blend of the two contexts whose style share
depends on the layer's resolution level.

One knob, `mix` in [0, 1], sweeps from all content (0) to all style (1); the style takes over the
levels from the finest down, the middle block last:

    weight(level) = clamp(mix * (levels + 1) - level, 0, 1),    level 0 = full latent resolution,
                                                                level `levels` = the middle block

A transformer (Flux.2 Klein, Z-Image) has no resolution levels: every block sees every image token at one
resolution, and its text tokens are a stream the blocks update, not a fixed context. There the unit is block depth.
The image tokens run through two text streams side by side, z_content's and z_style's (each block is run once with
each); a block's image output is the blend of its two outputs with that block's style share, and each text stream
carries on as its own. The style takes over the blocks from the last one back, as it takes the UNet's
finest levels first (the early blocks lay out the image, the late ones its appearance); with N blocks in
order (Klein: double-stream blocks first, then single-stream; Z-Image: its joint layers, not the refiners):

    weight(block) = clamp(mix * N - (N - 1 - block), 0, 1),     block 0 = the first block

so mix 0 is z_content alone, mix 1 is z_style alone, and mix 0.5 gives the last half of the blocks to the style.
"""
import math

import torch


def style_weights(mix: float, levels: int) -> list[float]:
    """Style share of each resolution level 0..levels-1, then of the middle block."""
    if not 0.0 <= mix <= 1.0:
        raise ValueError(f"mix must be in [0, 1] (0: all content, 1: all style); got {mix}")
    return [min(1.0, max(0.0, mix * (levels + 1) - level)) for level in range(levels + 1)]


def block_style_weights(mix: float, blocks: int) -> list[float]:
    """Style share of each transformer block, in the order the blocks run: the last block takes the style first."""
    return style_weights(mix, blocks - 1)[::-1]


def level_of(tokens: int, latent_height: int, latent_width: int, levels: int) -> int:
    """Resolution level of an attention layer from its token count (each level halves height and width)."""
    ratio = latent_height * latent_width / tokens
    return min(levels - 1, max(0, round(math.log(ratio, 4))))


def blend_contexts(content: torch.Tensor, style: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) * content + weight * style, with the style context broadcast over the batch."""
    if content.shape[1:] != style.shape[1:]:
        raise ValueError(f"z_content has {content.shape[1]} tokens of width {content.shape[2]} but z_style has "
                         f"{style.shape[1]} of width {style.shape[2]}: encode both with the same Semantic Encode "
                         "settings (template, CLIP, style encoder).")
    return blend(content, style.to(content).expand(content.shape[0], -1, -1), weight)


def blend(content: torch.Tensor, style: torch.Tensor, weight: float) -> torch.Tensor:
    """(1 - weight) * content + weight * style, exactly content at 0 and exactly style at 1."""
    if weight == 0.0:
        return content
    return style if weight == 1.0 else torch.lerp(content, style, weight)
