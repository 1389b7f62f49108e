"""Low-rank adapters attached to a frozen model with forward hooks (Hu et al., LoRA, eq. 3):

    y = W x + b + (alpha / rank) * up(down(x))

Hooks leave the model's own modules and state dict untouched, so the same frozen model serves
training, sampling previews and saving; `detach()` restores it exactly. `up` starts at zero, so an
untrained adapter changes nothing. Pure torch: no ComfyUI import.
"""
import math
import re

import torch
from torch import nn


class LoRAPair(nn.Module):
    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.alpha = alpha
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    @property
    def scale(self) -> float:
        return self.alpha / self.down.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x.to(self.down.weight.dtype))) * self.scale

    def delta_weight(self) -> torch.Tensor:
        """The merged update (out, in) that a weight-patching loader adds to W."""
        return self.scale * self.up.weight @ self.down.weight


class LoRASet(nn.Module):
    """LoRA pairs for the nn.Linear modules of `root` whose names match `pattern`; keys are module names."""

    def __init__(self, root: nn.Module, pattern: str, rank: int, alpha: float):
        super().__init__()
        targets = {name: m for name, m in root.named_modules()
                   if isinstance(m, nn.Linear) and re.search(pattern, name)}
        if not targets:
            raise ValueError(f"no linear layer of the model matches {pattern!r}")
        self.names = sorted(targets)
        self.pairs = nn.ModuleDict({self._key(n): LoRAPair(targets[n].in_features, targets[n].out_features, rank, alpha)
                                    for n in self.names})
        self._targets = targets
        self._handles = []

    @staticmethod
    def _key(module_name: str) -> str:
        return module_name.replace(".", "__")  # ModuleDict keys cannot hold dots

    def pair(self, module_name: str) -> LoRAPair:
        return self.pairs[self._key(module_name)]

    def attach(self) -> "LoRASet":
        if not self._handles:
            for name in self.names:
                pair = self.pair(name)
                self._handles.append(self._targets[name].register_forward_hook(
                    lambda module, args, out, pair=pair: out + pair(args[0]).to(out.dtype)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
