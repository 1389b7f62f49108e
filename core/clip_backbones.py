"""open_clip architectures by name, including StyleSmith's own tiny config.

The style encoder takes any open_clip architecture. Tests and the demo use `StyleSmith-Tiny-ViT`
(width 64, 2 layers, 64 px), randomly initialised: no weights are downloaded, ever. Real use loads a
user's weights into the same towers.
"""
from pathlib import Path

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
