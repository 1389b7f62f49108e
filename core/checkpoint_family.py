"""Tell a checkpoint's model family from its tensor names alone (a safetensors header read).

Used where no ComfyUI model is at hand yet, e.g. to pick the bundled workflows that fit a
user's checkpoint. Families are named as everywhere in StyleSmith: "sd15", "sdxl".
"""
from pathlib import Path

from safetensors import safe_open

FAMILY_MARKERS = {
    # SDXL base-family files hold both text encoders: clip_l at embedders.0, clip_g (open_clip form) at 1.
    "sdxl": "conditioner.embedders.1.model.",
    "sd15": "cond_stage_model.transformer.",
}


def family_from_keys(keys) -> str | None:
    keys = list(keys)
    for family, marker in FAMILY_MARKERS.items():
        if any(k.startswith(marker) for k in keys):
            return family
    return None


def checkpoint_family(path: Path) -> str:
    """The family of a single-file checkpoint; a clear error when it is not one we serve."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist: pass the path of a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); "
                         "convert it to .safetensors or re-download it.") from e
    family = family_from_keys(keys)
    if family is None:
        raise ValueError(f"{path} is neither an SD1.x nor an SDXL checkpoint (no text-encoder keys "
                         f"{' or '.join(FAMILY_MARKERS.values())}); StyleSmith's workflows need one of those.")
    return family


def family_of_comfy_model(model_patcher) -> str:
    """"sd15" or "sdxl" for a ComfyUI MODEL, read off its detected model-config class (and its bases),
    without importing ComfyUI; a clear error for any other family."""
    config = model_patcher.model.model_config
    names = {cls.__name__ for cls in type(config).__mro__}
    if "SDXL" in names:
        return "sdxl"
    if "SD15" in names:
        return "sd15"
    raise ValueError(f"ComfyUI detects this model as {type(config).__name__}; StyleSmith supports SD1.x (SD15) "
                     "and SDXL models.")
