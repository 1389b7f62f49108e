"""The tiny open_clip config is registered and builds a deterministic vision tower."""
import pytest
import torch

from core.clip_backbones import TINY_VIT, available_architectures, build_vision_tower, vision_preprocess_config


def test_tiny_vit_is_registered_and_embeds_images():
    assert TINY_VIT in available_architectures()
    tower = build_vision_tower(TINY_VIT, seed=1)
    size = vision_preprocess_config(TINY_VIT)["size"]
    features = tower(torch.randn(3, 3, size, size))
    assert features.shape == (3, 32)
    assert torch.isfinite(features).all()
    assert sum(p.numel() for p in tower.parameters()) < 1_000_000


def test_same_seed_same_tower_other_seed_other_tower():
    a, b, c = (build_vision_tower(TINY_VIT, seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_architecture_names_the_fix():
    with pytest.raises(ValueError, match="open_clip.list_models"):
        build_vision_tower("ViT-Nope-99")
