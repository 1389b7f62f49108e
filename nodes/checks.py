"""Checks every StyleSmith node makes: no non-finite number gets in through a widget, none leaves as an output.

ComfyUI's JSON reader accepts NaN, and NaN passes its min/max checks (every comparison with NaN is false), so
a float input must be checked by the node itself. An output that came out non-finite is refused with the inputs
most likely at fault, never handed on silently.
"""
import math

import torch


def require_finite_inputs(**values: float) -> None:
    """Refuse a float input that is NaN or infinite, naming it."""
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} is {value}: give a finite number (the widget's default is a safe start).")


def require_finite_tensor(what: str, tensor: torch.Tensor, fix: str) -> torch.Tensor:
    """Refuse a tensor input holding NaN or infinite values; `what` names it, `fix` says where it came from."""
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{what} holds NaN or infinite values: {fix}")
    return tensor


def require_finite_output(node: str, tensor: torch.Tensor, suspects: str) -> torch.Tensor:
    """Refuse a node's output that came out non-finite; `suspects` names the inputs most likely at fault."""
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{node} produced NaN or infinite values. The likely cause: {suspects}.")
    return tensor


def require_finite_conditioning(node: str, conditioning: list, suspects: str) -> list:
    for cond, options in conditioning:
        require_finite_output(node, cond, suspects)
        if torch.is_tensor(options.get("pooled_output")):
            require_finite_output(node, options["pooled_output"], suspects)
    return conditioning
