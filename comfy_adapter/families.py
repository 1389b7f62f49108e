"""Which registered model family (core/families.py) a loaded ComfyUI MODEL or CLIP belongs to."""
from .core_modules import errors, families

# Where ComfyUI's detected model configs record the width of the text context the denoiser reads: UNets
# (SD1.x, SDXL) `context_dim`, Flux and Flux.2 `context_in_dim`, Lumina 2 / Z-Image `cap_feat_dim`.
CONTEXT_WIDTH_KEYS = ("context_dim", "context_in_dim", "cap_feat_dim")


def context_width(model_config) -> int | None:
    """The width of the text context a ComfyUI model config's denoiser reads, or None if it records none."""
    unet_config = getattr(model_config, "unet_config", None) or {}
    return next((int(unet_config[k]) for k in CONTEXT_WIDTH_KEYS if unet_config.get(k) is not None), None)


def family_of_model(model_patcher) -> families.ModelFamily:
    """The family of a ComfyUI MODEL, read off its detected model-config class (and that class's bases) and the
    width of its text context."""
    config = model_patcher.model.model_config
    width = context_width(config)
    family = families.family_of_comfy_config({cls.__name__ for cls in type(config).__mro__}, width)
    if family is None:
        raise errors.UserValueError(f"ComfyUI detects this model as {type(config).__name__} (text context {width} wide); "
                         f"StyleSmith serves {families.SUPPORTED} models. Load an {families.ANY_SUPPORTED} model.")
    return family


def text_encoder_tokenizers(clip) -> dict[str, object]:
    """{the key ComfyUI's tokenize files an encoder's tokens under ("l", "g", "qwen3_4b"): that encoder's tokenizer}.

    ComfyUI's multi-encoder tokenizers hold each encoder's tokenizer as an attribute named by that key, or by
    "clip_" + key for the CLIP encoders; each records the embedding key and width of the vectors it accepts."""
    found = {}
    for key in clip.tokenize(""):
        tokenizer = getattr(clip.tokenizer, key, None) or getattr(clip.tokenizer, f"clip_{key}", None)
        if not all(hasattr(tokenizer, a) for a in ("embedding_key", "embedding_size")):
            raise errors.UserValueError(f"This CLIP has a text encoder '{key}' StyleSmith does not know; style tokens need an "
                             f"{families.ANY_SUPPORTED} CLIP.")
        found[key] = tokenizer
    return found


def text_encoder_widths(clip) -> dict[str, int]:
    """{embedding key: width} of a loaded ComfyUI CLIP's text encoders: {"clip_l": 768} for SD1.x,
    {"clip_l": 768, "clip_g": 1280} for SDXL, {"qwen3_4b": 2560} for Flux.2 Klein 4B and Z-Image (the keys
    `embedding:` files and style-token heads use)."""
    return {t.embedding_key: int(t.embedding_size) for t in text_encoder_tokenizers(clip).values()}


def family_of_clip(clip) -> families.ModelFamily:
    """The family of a loaded ComfyUI CLIP, from ComfyUI's text-encoder class and its encoders' widths."""
    widths = text_encoder_widths(clip)
    model_class = type(clip.cond_stage_model)
    family = families.family_of_comfy_text_encoder({cls.__name__ for cls in model_class.__mro__}, widths)
    if family is None:
        found = ", ".join(f"{k} {v}" for k, v in widths.items())
        types = ", ".join(f"{f.comfy_clip_type} for {f.display_name}" for f in families.SPLIT_FILES)
        raise errors.UserValueError(f"This CLIP's text encoders ({found}, ComfyUI's {model_class.__name__}) are not those of an "
                         f"{families.ANY_SUPPORTED} model. Use the CLIP of an {families.ANY_SUPPORTED} model; a "
                         f"text-encoder file needs the CLIPLoader / DualCLIPLoader type of its family ({types}).")
    return family
