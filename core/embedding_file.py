"""Style tokens as a ComfyUI textual-inversion embedding (`embedding:NAME` in a prompt).

SD1.x: one tensor `emb_params` (n_tokens, 768). SDXL: `clip_l` (n_tokens, 768) and
`clip_g` (n_tokens, 1280), the keys ComfyUI's loader looks up per text encoder.
Metadata: stylesmith.format = "embedding", stylesmith.format_version = "1", stylesmith.family.
ComfyUI itself reads these files; `read_embedding` is StyleSmith's one reader (tests, trainers).
"""
import torch

from .safe_files import WeightFileError, read_safetensors, write_safetensors_atomic

SINGLE_TENSOR_KEY = "emb_params"


def save_embedding(vectors: dict[str, torch.Tensor], family: str, path) -> None:
    """vectors: {"clip_l": (n, 768)} or {"clip_l": (n, 768), "clip_g": (n, 1280)}."""
    tensors = {SINGLE_TENSOR_KEY: vectors["clip_l"]} if set(vectors) == {"clip_l"} else dict(vectors)
    write_safetensors_atomic({k: v.float() for k, v in tensors.items()}, path,
                             {"stylesmith.format": "embedding", "stylesmith.format_version": "1",
                              "stylesmith.family": family})


def read_embedding(path) -> dict[str, torch.Tensor]:
    tensors, _ = read_safetensors(path, "embedding")
    if SINGLE_TENSOR_KEY in tensors:
        return {"clip_l": tensors[SINGLE_TENSOR_KEY]}
    if not {"clip_l"} <= set(tensors):
        raise WeightFileError(f"{path} holds {sorted(tensors)}, not an SD1 or SDXL embedding.")
    return tensors
