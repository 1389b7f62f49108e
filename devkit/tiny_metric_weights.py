"""Metric model files with random weights in their real formats, for tests and the example report:
a whole open_clip model (safetensors) and a CSD checkpoint (torch state dict, as CSD publishes it).
The numbers they give mean nothing about quality."""
from pathlib import Path

import torch

from core.style_tokens.clip_backbones import TINY_VIT, open_clip_with_configs


def write_tiny_clip(path, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    """`StyleSmith-Tiny-ViT` open_clip model (vision and text towers) -> safetensors; returns (path, model)."""
    from safetensors.torch import save_file
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip_with_configs().create_model(TINY_VIT, pretrained=None).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return Path(path), model


def write_tiny_csd(path, seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor]:
    """A CSD checkpoint in the published layout (`model_state_dict`, keys `module.backbone.*`,
    `module.last_layer_style`, `module.last_layer_content`) with a tiny ViT (width 64, 2 layers, 64 px, one
    64-wide head, quick-GELU as OpenAI CLIP). Returns the backbone (without `proj`) and the style projection."""
    from open_clip.transformer import QuickGELU, VisionTransformer
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = VisionTransformer(image_size=64, patch_size=16, width=64, layers=2, heads=1, mlp_ratio=4.0,
                                     output_dim=32, act_layer=QuickGELU).eval()
        style, content = torch.randn(64, 32), torch.randn(64, 32)
    state = {f"module.backbone.{k}": v for k, v in backbone.state_dict().items() if k != "proj"}
    state.update({"module.last_layer_style": style, "module.last_layer_content": content})
    torch.save({"model_state_dict": state}, path)
    backbone.proj = None
    return backbone, style
