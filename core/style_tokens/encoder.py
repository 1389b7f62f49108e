"""The style encoder (Chang, arXiv 2510.01347): CLIP vision backbone + one projection head per text encoder.

    image -> backbone pooled feature f (B, F) -> head_k: Linear(F, n_tokens * width_k) -> (B, n_tokens, width_k)

The paper's backbone is CLIP ViT-L/14 taking `pooler_output` (the post-LayerNorm class token, before
CLIP's projection) and a single head Linear(1024, 8*768) for SD's CLIP-L. Here the backbone is any
open_clip vision tower and there is one head per text encoder of the family it was trained with (SD1: clip_l;
SDXL: clip_l and clip_g). A head is named by its text encoder's ComfyUI embedding key, and serves every family
that encodes with that encoder. Head names and widths come from the file's metadata, never from constants.
"""
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from ..data.image_preprocess import Preprocess


@dataclass
class StyleEncoderConfig:
    family: str                    # the model family it was trained with: "sd15", "sdxl" (messages, provenance)
    architecture: str              # open_clip architecture name, e.g. "ViT-L-14-quickgelu"
    backbone_config: dict          # the full open_clip model config, so any architecture rebuilds anywhere
    heads: dict[str, int]          # text encoder's ComfyUI embedding key -> token width, e.g. {"clip_l": 768}
    preprocess: Preprocess         # size, mean, std: the authors trained with mean = std = 0.5, not CLIP's
    n_tokens: int = 8              # style tokens per image; the paper uses 8
    training: dict = field(default_factory=dict)  # stage, steps, dataset fingerprint (provenance only)


def build_backbone(architecture: str, backbone_config: dict) -> tuple[nn.Module, int]:
    """An open_clip vision tower returning pooled features before CLIP's projection, and their width."""
    import open_clip
    if open_clip.get_model_config(architecture) != backbone_config:
        with tempfile.TemporaryDirectory() as tmp:
            config_path = Path(tmp) / f"{architecture}.json"
            config_path.write_text(json.dumps(backbone_config))
            open_clip.add_model_config(config_path)
    visual = open_clip.create_model(architecture, pretrained=None).visual
    if isinstance(getattr(visual, "proj", None), nn.Parameter):
        feature_dim = visual.proj.shape[0]
        visual.proj = None          # keep the pooled (pooler_output-like) feature, as the paper does
    else:
        feature_dim = visual.output_dim
    return visual, feature_dim


class StyleEncoder(nn.Module):
    def __init__(self, config: StyleEncoderConfig):
        super().__init__()
        self.config = config
        self.backbone, feature_dim = build_backbone(config.architecture, config.backbone_config)
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, config.n_tokens * width)
                                    for name, width in config.heads.items()})

    @property
    def feature_dim(self) -> int:
        return next(iter(self.heads.values())).in_features

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, F) pooled backbone features."""
        return self.backbone(pixels)

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, S, S) normalised pixels -> {text-encoder name: (B, n_tokens, width)}."""
        f = self.features(pixels)
        return {name: rearrange(head(f), "b (n w) -> b n w", n=self.config.n_tokens)
                for name, head in self.heads.items()}
