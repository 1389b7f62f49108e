"""ComfyUI's CLIP vision models, as Load CLIP Vision and CLIP Vision Encode use them, and the OSASIS semantic
code z_sem made from their image embeddings (core/osasis/semantics.py). Node and trainer both come here, so
they load the same model and make the same code."""
from pathlib import Path

import torch

from .core_modules import families, osasis_semantics, safe_files

WHAT = "CLIP vision model"


def load_clip_vision(path):
    """A models/clip_vision file, loaded by ComfyUI's own loader (what Load CLIP Vision gives a graph)."""
    import comfy.clip_vision
    path = safe_files.check_safetensors_file(Path(path), WHAT)
    try:
        model = comfy.clip_vision.load(str(path))
    except (RuntimeError, ValueError, OSError) as e:
        raise safe_files.corrupt_file_error(path, WHAT, e) from e
    if model is None:
        raise safe_files.WeightFileError(
            f"{path.name} is not a CLIP vision model ComfyUI recognises (CLIP ViT-L/14, ViT-H/14 or ViT-bigG/14, "
            "in the Hugging Face or open_clip layout). Use a models/clip_vision file, such as the image encoder "
            "of openai/clip-vit-large-patch14.")
    return model


def image_embeds(clip_vision, images: torch.Tensor) -> torch.Tensor:
    """CLIP's projected image embeddings (batch, width) of an IMAGE batch, as CLIP Vision Encode computes them
    (centre crop)."""
    return clip_vision.encode_image(images, crop=True).image_embeds.float()


def clip_vision_code(clip_vision, images: torch.Tensor, family: families.ModelFamily) -> tuple[torch.Tensor, torch.Tensor]:
    """z_sem (context (B, 1, W), pooled) of an IMAGE batch from its CLIP image embeddings."""
    return osasis_semantics.image_embedding_code(image_embeds(clip_vision, images), family)
