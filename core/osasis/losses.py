"""OSASIS training losses (Cho et al., CVPR 2024, Sec. 3.4), with E a CLIP image encoder.

Notation: I_A^s photoreal counterpart of the style image I_B^s; I_A^c a content image; x_B^c its stylised
output; x_B^s the model's reconstruction of the style image.

    cross-domain  L_cd = 1 - cos(E(x_B^c) - E(I_A^c), E(I_B^s) - E(I_A^s))        weight 1
    in-domain     L_id = 1 - cos(E(I_A^c) - E(I_A^s), E(x_B^c) - E(I_B^s))        weight 0.5
    reconstruction L_rec = 10 |x_B^s - I_B^s|_1 + 10 LPIPS + 30 (1 - cos(E(x_B^s), E(I_B^s)))

Images here are ComfyUI IMAGEs in [0, 1]; the authors' are in [-1, 1]. The L1 term is taken on the images mapped
to [-1, 1] (twice the [0, 1] distance), so its weight 10 means what the authors' 10 means.

The cross-domain term asks the content to move as the style image moved from its photoreal counterpart;
the in-domain term asks content and style to keep their relation across domains. LPIPS is optional: it
needs VGG weights, used only when a callable for it is given (it takes [0, 1] images and maps them itself).
`encode` maps images to embeddings.
"""
from collections.abc import Callable

import torch
import torch.nn.functional as F

Encode = Callable[[torch.Tensor], torch.Tensor]


def _one_minus_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)).mean()


def to_signed(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the authors' image range."""
    return images * 2 - 1


def cross_domain_loss(encode: Encode, stylised_content, content, style, style_photo) -> torch.Tensor:
    return _one_minus_cos(encode(stylised_content) - encode(content), encode(style) - encode(style_photo))


def in_domain_loss(encode: Encode, stylised_content, content, style, style_photo) -> torch.Tensor:
    return _one_minus_cos(encode(content) - encode(style_photo), encode(stylised_content) - encode(style))


def reconstruction_loss(encode: Encode, reconstruction, style, lpips: Callable | None = None,
                        l1_weight: float = 10.0, lpips_weight: float = 10.0, clip_weight: float = 30.0) -> torch.Tensor:
    loss = (l1_weight * F.l1_loss(to_signed(reconstruction), to_signed(style))
            + clip_weight * _one_minus_cos(encode(reconstruction), encode(style)))
    if lpips is not None:
        loss = loss + lpips_weight * lpips(reconstruction, style).mean()
    return loss

