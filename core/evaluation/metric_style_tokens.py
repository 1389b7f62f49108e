"""Style similarity in our own style encoder's space: cosine of the two images' style tokens.

The tokens of every text-encoder head are concatenated and flattened, (B, sum_k n_tokens * width_k);
they are what the style-token method conditions on, so two images with the same tokens get the same
style. (Style tokens share a large mean token, so the cosine of unrelated styles is far above 0; compare
methods with each other, not with 0.)
"""
import torch

from ..data.image_preprocess import preprocess
from ..style_tokens.encoder import StyleEncoder


@torch.no_grad()
def style_tokens(encoder: StyleEncoder, images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) in [0, 1] -> (B, D) flattened style tokens of all heads."""
    tokens = encoder(preprocess(images, encoder.config.preprocess))
    return torch.cat([tokens[name].flatten(1) for name in sorted(tokens)], dim=1)
