"""CSD style descriptors (Somepalli et al. 2024, "Measuring Style Similarity in Diffusion Models").

CSD is a CLIP ViT (ViT-L/14 in the published checkpoint) fine-tuned for style, with two projection
matrices in place of CLIP's `proj`: the style descriptor is normalize(backbone(x) @ last_layer_style).
Its checkpoint is a torch state dict (under `model_state_dict`, keys prefixed `module.`):
`backbone.*` in OpenAI CLIP's VisionTransformer names, which open_clip's VisionTransformer shares,
`last_layer_style` and `last_layer_content` (width, embed). The architecture is read from the shapes,
with 64-wide heads and quick-GELU as in OpenAI CLIP; images are preprocessed as CLIP's (bicubic, CLIP
mean/std) at the backbone's own resolution (224 for ViT-L/14).
"""
import math
import re

import torch
import torch.nn.functional as F

from ..formats.clip_vision_import import CLIP_MEAN, CLIP_STD
from .weights import MetricUnavailable, read_weights, tensors_under
from ..data.image_preprocess import Preprocess, preprocess
from ..style_tokens.encoder import build_backbone

LAYER = re.compile(r"^transformer\.resblocks\.(\d+)\.")


def csd_backbone_config(backbone: dict[str, torch.Tensor]) -> dict:
    """The open_clip model config of a CSD backbone, derived from its tensor shapes."""
    width = backbone["class_embedding"].shape[0]
    patch = backbone["conv1.weight"].shape[-1]
    grid = math.isqrt(backbone["positional_embedding"].shape[0] - 1)
    layers = 1 + max(int(m.group(1)) for k in backbone if (m := LAYER.match(k)))
    mlp_ratio = backbone["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width
    return {"embed_dim": width, "quick_gelu": True,
            "vision_cfg": {"image_size": grid * patch, "layers": layers, "width": width, "head_width": 64,
                           "patch_size": patch, "mlp_ratio": mlp_ratio},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1}}


class CSD(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module, style_projection: torch.Tensor, image_size: int):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("style_projection", style_projection.float())
        self.preprocess = Preprocess(size=image_size, mean=CLIP_MEAN, std=CLIP_STD)

    @torch.no_grad()
    def style_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] -> (B, embed) unit style descriptors."""
        return F.normalize(self.backbone(preprocess(images, self.preprocess)) @ self.style_projection, dim=-1)


def load_csd(path) -> CSD:
    state = tensors_under(read_weights(path, "CSD"), "model_state_dict", "state_dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    backbone_state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    if "last_layer_style" not in state or "class_embedding" not in backbone_state:
        raise MetricUnavailable(f"{path} is not a CSD checkpoint (no last_layer_style / backbone.class_embedding); "
                                "use the CSD ViT-L checkpoint (checkpoint.pth or pytorch_model.bin)")
    backbone_state.pop("proj", None)
    config = csd_backbone_config(backbone_state)
    architecture = "csd-backbone-w{width}-l{layers}-p{patch_size}-s{image_size}".format(**config["vision_cfg"])
    backbone, _ = build_backbone(architecture, config)
    try:
        backbone.load_state_dict({k: v.float() for k, v in backbone_state.items()}, strict=True)
    except RuntimeError as e:
        raise MetricUnavailable(f"{path}: the CSD backbone does not fit a CLIP ViT ({' '.join(str(e).split())[:300]})") from e
    return CSD(backbone.eval().requires_grad_(False), state["last_layer_style"], config["vision_cfg"]["image_size"]).eval()
