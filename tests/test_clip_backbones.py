"""The tiny open_clip config is registered and builds the style encoder's backbone."""
import pytest
import torch

from core.style_tokens.clip_backbones import TINY_VIT, backbone_config
from core.style_tokens.encoder import build_backbone


def test_tiny_vit_is_registered_and_embeds_images():
    config = backbone_config(TINY_VIT)
    tower, feature_dim = build_backbone(TINY_VIT, config)
    size = config["vision_cfg"]["image_size"]
    features = tower(torch.randn(3, 3, size, size))
    assert features.shape == (3, feature_dim) == (3, config["vision_cfg"]["width"])
    assert torch.isfinite(features).all()
    assert sum(p.numel() for p in tower.parameters()) < 1_000_000


def test_unknown_architecture_names_the_fix():
    with pytest.raises(ValueError, match="open_clip.list_models"):
        backbone_config("ViT-Nope-99")
