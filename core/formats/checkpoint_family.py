"""Tell a checkpoint's model family from its tensor names alone (a safetensors header read).

Used where no ComfyUI model is at hand yet: before ComfyUI reads a trainer's checkpoint, and to pick the
bundled workflows that fit a user's checkpoint. Families and their markers are in core/families.py.
"""
from pathlib import Path

from safetensors import safe_open

from ..families import ANY_SUPPORTED, FAMILIES, SUPPORTED, family_of_checkpoint_keys


def checkpoint_family(path: Path) -> str:
    """The family key of a single-file checkpoint; a clear error when it is not one we serve."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist: pass the path of a .safetensors file.")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); "
                         "convert it to .safetensors or re-download it.") from e
    family = family_of_checkpoint_keys(keys)
    if family is None:
        markers = " or ".join(f.checkpoint_marker for f in FAMILIES.values())
        raise ValueError(f"{path} is not a checkpoint of a family StyleSmith serves ({SUPPORTED}): it has no "
                         f"text-encoder keys {markers}. Use an {ANY_SUPPORTED} checkpoint.")
    return family.key
