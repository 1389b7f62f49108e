"""open_clip vision towers by architecture name, including StyleSmith's own tiny configs.

The style encoder and the CLIP losses take any open_clip architecture. Tests and the demo use
`StyleSmith-Tiny-ViT` (width 64, 2 layers, 64 px), randomly initialised: no weights are
downloaded, ever. Real use loads a user's weights into the same towers.
"""
from pathlib import Path

import torch

CONFIG_DIR = Path(__file__).parent / "open_clip_configs"
TINY_VIT = "StyleSmith-Tiny-ViT"


def open_clip_with_configs():
    """open_clip, with our configs registered. Imported lazily: it is heavy for ComfyUI's start-up."""
    import open_clip
    if TINY_VIT not in open_clip.list_models():
        open_clip.add_model_config(CONFIG_DIR)
    return open_clip


def available_architectures() -> list[str]:
    return open_clip_with_configs().list_models()


def build_vision_tower(architecture: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised open_clip vision tower; the same seed gives the same weights."""
    open_clip = open_clip_with_configs()
    if architecture not in open_clip.list_models():
        raise ValueError(f"open_clip has no architecture {architecture!r}; "
                         f"pick one of open_clip.list_models(), e.g. {TINY_VIT!r} or 'ViT-L-14'.")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(architecture, pretrained=None)
    return model.visual


def vision_preprocess_config(architecture: str) -> dict:
    """open_clip's preprocessing for an architecture: size, mean, std, interpolation, resize mode."""
    open_clip = open_clip_with_configs()
    config = open_clip.get_model_config(architecture)
    if config is None:
        raise ValueError(f"open_clip has no architecture {architecture!r}")
    size = config["vision_cfg"]["image_size"]
    defaults = {"size": size, "mean": list(open_clip.OPENAI_DATASET_MEAN), "std": list(open_clip.OPENAI_DATASET_STD),
                "interpolation": "bicubic", "resize_mode": "shortest"}
    defaults.update(config.get("preprocess_cfg", {}))
    return defaults
