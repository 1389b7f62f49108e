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


def text_encoder_tokenizers(clip) -> dict[str, object]:
    """{the key ComfyUI's tokenize files an encoder's tokens under ("l", "g", "qwen3_4b"): that encoder's tokenizer}.

    ComfyUI's multi-encoder tokenizers hold each encoder's tokenizer as an attribute named by that key, or by
    "clip_" + key for the CLIP encoders; each records the embedding key and width of the vectors it accepts."""
    found = {}
    for key in clip.tokenize(""):
        tokenizer = getattr(clip.tokenizer, key, None) or getattr(clip.tokenizer, f"clip_{key}", None)
        if not all(hasattr(tokenizer, a) for a in ("embedding_key", "embedding_size")):
            raise ValueError(f"This CLIP has a text encoder '{key}' StyleSmith does not know; style tokens need an "
                             f"{families.ANY_SUPPORTED} CLIP.")
        found[key] = tokenizer
    return found


def text_encoder_widths(clip) -> dict[str, int]:
    """{embedding key: width} of a loaded ComfyUI CLIP's text encoders: {"clip_l": 768} for SD1.x,
    {"clip_l": 768, "clip_g": 1280} for SDXL (the keys `embedding:` files and style-token heads use)."""
    return {t.embedding_key: int(t.embedding_size) for t in text_encoder_tokenizers(clip).values()}


def family_of_clip(clip) -> families.ModelFamily:
    """The family of a loaded ComfyUI CLIP, from its text encoders and their widths."""
    widths = text_encoder_widths(clip)
    family = families.family_of_text_encoders(widths)
    if family is None:
        found = ", ".join(f"{k} {v}" for k, v in widths.items())
        raise ValueError(f"This CLIP's text encoders ({found}) are not those of an {families.ANY_SUPPORTED} "
                         f"checkpoint. Use the CLIP of an {families.ANY_SUPPORTED} checkpoint.")
    return family
