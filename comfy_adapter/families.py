"""Which registered model family (core/families.py) a loaded ComfyUI MODEL or CLIP belongs to."""
from .core_modules import families


def family_of_model(model_patcher) -> families.ModelFamily:
    """The family of a ComfyUI MODEL, read off its detected model-config class and that class's bases."""
    config = model_patcher.model.model_config
    family = families.family_of_comfy_config({cls.__name__ for cls in type(config).__mro__})
    if family is None:
        raise ValueError(f"ComfyUI detects this model as {type(config).__name__}; StyleSmith serves "
                         f"{families.SUPPORTED} models. Load an {families.ANY_SUPPORTED} checkpoint.")
    return family


def text_encoder_widths(clip) -> dict[str, int]:
    """{"clip_l": 768} for SD1.x, {"clip_g": 1280, "clip_l": 768} for SDXL, read off a loaded ComfyUI CLIP
    (its tokenizers record the width of the embeddings they accept)."""
    widths = {}
    for key in clip.tokenize(""):
        tokenizer = getattr(clip.tokenizer, f"clip_{key}", None)
        if tokenizer is None or not hasattr(tokenizer, "embedding_size"):
            raise ValueError(f"This CLIP has a text encoder '{key}' StyleSmith does not know; style tokens need an "
                             f"{families.ANY_SUPPORTED} CLIP.")
        widths[f"clip_{key}"] = int(tokenizer.embedding_size)
    return widths


def family_of_clip(clip) -> families.ModelFamily:
    """The family of a loaded ComfyUI CLIP, from its text encoders and their widths."""
    widths = text_encoder_widths(clip)
    family = families.family_of_text_encoders(widths)
    if family is None:
        found = ", ".join(f"{k} {v}" for k, v in widths.items())
        raise ValueError(f"This CLIP's text encoders ({found}) are not those of an {families.ANY_SUPPORTED} "
                         f"checkpoint. Use the CLIP of an {families.ANY_SUPPORTED} checkpoint.")
    return family
