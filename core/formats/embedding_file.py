"""Style tokens as a ComfyUI textual-inversion embedding (`embedding:NAME` in a prompt).

SD1.x: one tensor `emb_params` (n_tokens, 768). Otherwise one tensor per text encoder under its ComfyUI embedding
key, which ComfyUI's loader looks up per text encoder: SDXL `clip_l` (n_tokens, 768) and `clip_g` (n_tokens, 1280);
Flux.2 Klein 4B and Z-Image `qwen3_4b` (n_tokens, 2560).
Metadata: stylesmith.format = "embedding", stylesmith.format_version = "1", stylesmith.family.
ComfyUI itself reads these files; `read_embedding` is StyleSmith's one reader (tests, trainers).
"""
import re

import torch

from ..families import FAMILIES, text_encoder
from .safe_files import WeightFileError, read_safetensors, write_safetensors_atomic

SINGLE_TENSOR_KEY = "emb_params"
# ComfyUI reads `embedding:NAME` up to the next space and strips trailing commas; parentheses and colons are prompt
# weighting syntax. So a usable name is letters, digits, '_', '-' and '.', not starting with '.', at most 100 long.
USABLE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")
# Names Windows reserves for devices, with any extension ("nul.style.safetensors" opens the NUL device there).
WINDOWS_RESERVED = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(\..*)?", re.IGNORECASE)


def check_embedding_name(name: str) -> None:
    """Refuse a name that `embedding:NAME` in a prompt could not find, saying what is allowed."""
    if not USABLE_NAME.fullmatch(name):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ValueError(f"{shown!r} ({len(name)} characters) is not a usable embedding name: `embedding:NAME` in a "
                         "prompt needs 1 to 100 letters, digits, '_', '-' or '.', not starting with '.' (no spaces, "
                         "slashes, colons or parentheses).")
    if WINDOWS_RESERVED.fullmatch(name):
        raise ValueError(f"{name!r} is not a usable embedding name: Windows reserves {name.split('.')[0].upper()} "
                         "for a device, so the file could not be written or shared there. Pick another name.")


def save_embedding(vectors: dict[str, torch.Tensor], family: str, path) -> None:
    """vectors: {embedding key: (n, width)}, e.g. {"clip_l": (n, 768)} or {"qwen3_4b": (n, 2560)}."""
    tensors = {SINGLE_TENSOR_KEY: vectors["clip_l"]} if set(vectors) == {"clip_l"} else dict(vectors)
    write_safetensors_atomic({k: v.float() for k, v in tensors.items()}, path,
                             {"stylesmith.format": "embedding", "stylesmith.format_version": "1",
                              "stylesmith.family": family}, "embedding")


def read_embedding(path) -> dict[str, torch.Tensor]:
    tensors, _ = read_safetensors(path, "embedding")
    if SINGLE_TENSOR_KEY in tensors:
        return {"clip_l": tensors[SINGLE_TENSOR_KEY]}
    unknown = sorted(k for k in tensors if text_encoder(k) is None)
    if unknown or not tensors:
        raise WeightFileError(f"{path} holds {sorted(tensors)}, not tensors keyed by text encoders StyleSmith knows "
                              f"({', '.join(sorted({e.key for f in FAMILIES.values() for e in f.encoders}))}).")
    return tensors
