"""Checks every StyleSmith node makes: no non-finite number gets in through a widget, none leaves as an output.

ComfyUI's JSON reader accepts NaN, and NaN passes its min/max checks (every comparison with NaN is false), so
a float input must be checked by the node itself. An output that came out non-finite is refused with the inputs
most likely at fault, never handed on silently. Every IMAGE input goes through `checked_image`: one rule for all.
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


# How far an IMAGE may stray outside [0, 1] and still be clamped: bicubic resampling of hard edges overshoots by up
# to about 0.35 (torch's bicubic on random binary pixels). Beyond this the pixels are in another convention.
IMAGE_OVERSHOOT = 0.5


def checked_image(node: str, image: torch.Tensor) -> torch.Tensor:
    """The IMAGE input of `node`, clamped to [0, 1]; refused when it holds NaN or inf, or values far outside [0, 1].

    ComfyUI's IMAGE is float in [0, 1]. A foreign node's 0-255 pixels would otherwise turn into an almost white
    reference and its -1..1 pixels into a dark one, both without a word; a small overshoot from resampling is
    harmless and is clamped.
    """
    if not torch.isfinite(image).all():
        bad = int((~torch.isfinite(image)).sum())
        raise ValueError(f"{node}: the image holds {bad} NaN or infinite pixel value(s). Check the node that made it, "
                         "or load the image again.")
    if image.numel() == 0:
        return image
    low, high = float(image.min()), float(image.max())
    if high > 1 + IMAGE_OVERSHOOT:
        raise ValueError(f"{node}: the image holds values up to {high:g}, but ComfyUI images are 0 to 1. The likely "
                         "cause: the node that made it gives 0-255 pixel values; divide them by 255 or fix that node.")
    if low < -IMAGE_OVERSHOOT:
        raise ValueError(f"{node}: the image holds values down to {low:g}, but ComfyUI images are 0 to 1. The likely "
                         "cause: the node that made it gives -1 to 1 values (as a VAE or a normalised tensor does); "
                         "map them with (x + 1) / 2 or fix that node.")
    return image.clamp(0, 1)
