"""Weights for the evaluation metrics: read them safely, and say which metric is missing which file.

Metric backbones come from other projects (torchvision, torch-fidelity, CSD) as `.pth` state dicts, so
besides safetensors this reads `.pth/.pt/.bin` with `torch.load(weights_only=True)`, which unpickles
tensors and plain containers only and never runs code. A file that needs more than that is refused
with the way to convert it.
"""
from dataclasses import dataclass
from pathlib import Path

import torch

from ..formats.safe_files import read_safetensors

TORCH_SUFFIXES = {".pth", ".pt", ".bin"}


class MetricUnavailable(RuntimeError):
    """A metric cannot run here (its weights are missing or unreadable); the message names the fix."""


@dataclass
class Availability:
    """One line of the report's "metrics" section: what ran, on which weights, or why not."""
    metric: str
    status: str          # "on", "missing" or "off"
    detail: str


def read_weights(path, what: str) -> dict:
    """The tensors of a weight file: safetensors, or a torch state dict read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise MetricUnavailable(f"the {what} file {path} does not exist")
    if path.suffix.lower() == ".safetensors":
        return read_safetensors(path, what)[0]
    if path.suffix.lower() not in TORCH_SUFFIXES:
        raise MetricUnavailable(f"{path.name} is neither .safetensors nor a torch .pth/.pt/.bin state dict "
                                f"(the {what})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # weights_only refusals and corrupt files alike: the file cannot be used safely
        raise MetricUnavailable(f"{path.name} cannot be read as a plain state dict with torch.load(weights_only=True) "
                                f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). Load it once in a trusted "
                                f"session and save its state dict with safetensors.torch.save_file") from e
    if not isinstance(state, dict):
        raise MetricUnavailable(f"{path.name} holds a {type(state).__name__}, not a state dict (the {what})")
    return state


def tensors_under(state: dict, *containers: str) -> dict[str, torch.Tensor]:
    """The flat tensor dict of a state dict, looking inside the first wrapper key present (e.g. `model_state_dict`)."""
    for key in containers:
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
