"""Gradient checkpointing on a model we do not own: chosen blocks keep only their inputs for backward and
recompute their activations then, trading one extra forward for most of the activation memory (SDXL at
1024 px). Gradients are unchanged. Pure torch: the caller says which modules are blocks.
"""
import functools
from typing import Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def _copied(value):
    return value.clone() if isinstance(value, torch.Tensor) else value


def _with_copied_inputs(forward, *args, **kwargs):
    """A block that adds to its own input in place (Flux's blocks: img += ...) would change the input checkpoint
    saved for the recomputation; fed a copy, it changes the copy. The copy is made inside the checkpointed region,
    so it is not kept."""
    return forward(*map(_copied, args), **{k: _copied(v) for k, v in kwargs.items()})


def _checkpointed(forward, *args, **kwargs):
    if torch.is_grad_enabled():
        return checkpoint(_with_copied_inputs, forward, *args, use_reentrant=False, **kwargs)
    return forward(*args, **kwargs)


def checkpoint_blocks(root: nn.Module, is_block: Callable[[nn.Module], bool]) -> int:
    """Checkpoint every submodule of `root` for which `is_block` holds; returns how many. Idempotent.

    Forward hooks of modules inside a block (our LoRA) run again in the recomputation, as they must."""
    count = 0
    for module in root.modules():
        if is_block(module):
            if "forward" not in vars(module):
                module.forward = functools.partial(_checkpointed, module.forward)
            count += 1
    return count
