"""A randomly initialised CLIP ViT-L/14 image encoder in the models/clip_vision format (the Hugging Face
CLIPVisionModelWithProjection keys), which ComfyUI's Load CLIP Vision detects and loads.

ComfyUI recognises CLIP vision files only at the real architectures' sizes (it picks a fixed config by layer
count), so this one is full size: 304M parameters, about 580 MiB in fp16. The tests of the CLIP-vision semantic
code build it on first use into the tiny models folder; nothing else needs it.
"""
from pathlib import Path

import torch

from core.formats.safe_files import write_safetensors_atomic

from .tiny_models import DEFAULT_SEED, ensure_built

BUILDER_VERSION = 1
FILE_NAME = "stylesmith-random-clip-vit-l-14.safetensors"
VIT_L_14 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                image_size=224, patch_size=14, projection_dim=768, hidden_act="quick_gelu")


def build_clip_vision(path: Path, seed: int) -> None:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(**VIT_L_14))
    write_safetensors_atomic({k: v.half() for k, v in model.state_dict().items()}, path,
                             {"stylesmith.random_clip_vision": f"ViT-L/14, seed {seed}"})


def ensure_random_clip_vision(models_dir: Path, seed: int = DEFAULT_SEED) -> Path:
    recipe = {"builder": BUILDER_VERSION, "seed": seed, "config": VIT_L_14}
    return ensure_built(models_dir / "clip_vision" / FILE_NAME, recipe, lambda p: build_clip_vision(p, seed))
