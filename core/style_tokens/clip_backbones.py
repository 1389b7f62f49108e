"""open_clip architectures by name, including StyleSmith's own tiny config.

The style encoder takes any open_clip architecture. Real use starts from pretrained weights: open_clip's own
pretrained tags (downloaded once by open_clip, on a user's machine) or a local checkpoint file. Tests and the
demo use `StyleSmith-Tiny-ViT` (width 64, 2 layers, 64 px), randomly initialised by explicit choice;
`StyleSmith-Tiny-ViT-224` is the same tower at the paper's 224 px, for the data-streaming benchmark.
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


def backbone_config(architecture: str) -> dict:
    """The open_clip model config of an architecture; a clear error naming the fix for an unknown one."""
    config = open_clip_with_configs().get_model_config(architecture)
    if config is None:
        raise ValueError(f"open_clip has no architecture {architecture!r}; "
                         f"pick one of open_clip.list_models(), e.g. {TINY_VIT!r} or 'ViT-L-14-quickgelu'.")
    return config


def pretrained_visual_state(architecture: str, pretrained: str) -> dict[str, torch.Tensor]:
    """The vision tower's state dict of open_clip's `architecture` with pretrained weights `pretrained`: an
    open_clip tag (e.g. "openai") or the path of an open_clip checkpoint (.safetensors, or a .pt that
    open_clip reads with weights_only). A clear error, naming every way out, when they cannot be had."""
    open_clip = open_clip_with_configs()
    backbone_config(architecture)
    try:
        model = open_clip.create_model(architecture, pretrained=pretrained)
    except Exception as e:   # offline, unknown tag, damaged file: open_clip raises many kinds
        raise RuntimeError(
            f"Cannot load open_clip's pretrained weights {pretrained!r} for {architecture} ({type(e).__name__}: {e}). "
            "Offline? Start the backbone from a local file instead: --init-clip-vision FILE (a ComfyUI "
            "models/clip_vision file) or --pretrained PATH (an open_clip checkpoint); or choose --random-init "
            "to train from random weights (not what the paper does).") from e
    return model.visual.state_dict()
