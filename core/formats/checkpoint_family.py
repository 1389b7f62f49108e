"""Tell a checkpoint's model family from its tensor names alone (a safetensors header read).

Used where no ComfyUI model is at hand yet: before ComfyUI reads a trainer's checkpoint, and to pick the
bundled workflows that fit a user's checkpoint. Families and their markers are in core/families.py.
"""
from pathlib import Path

from safetensors import safe_open

from ..errors import UserValueError, expect_path
from ..families import SINGLE_FILE, SPLIT_FILES, family_of_checkpoint_keys, names


def checkpoint_family(path: Path) -> str:
    """The family key of a single-file checkpoint; a clear error when it is not one we serve.

    Only families with single-file checkpoints (SD1.x, SDXL) are told here; the others come as split files."""
    path = expect_path(path, "file", "checkpoint", "pass the path of a .safetensors file")
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:
        raise UserValueError(f"{path} is not a readable safetensors file ({e}); "
                         "convert it to .safetensors or re-download it.") from e
    family = family_of_checkpoint_keys(keys)
    if family is None:
        markers = " or ".join(f.checkpoint_marker for f in SINGLE_FILE)
        raise UserValueError(f"{path} is not a checkpoint of a family StyleSmith serves ({names(SINGLE_FILE, 'and')}): "
                         f"it has no text-encoder keys {markers}. Use an {names(SINGLE_FILE, 'or')} checkpoint; "
                         f"{names(SPLIT_FILES, 'and')} are loaded from their split files (diffusion model, text "
                         "encoder, VAE).")
    return family.key
