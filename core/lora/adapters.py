"""Low-rank adapters attached to a frozen model with forward hooks (Hu et al., LoRA, eq. 3):

    y = W x + b + (alpha / rank) * up(down(x))

Hooks leave the model's own modules and state dict untouched, so the same frozen model serves
training, sampling previews and saving; `detach()` restores it exactly. `up` starts at zero, so an
untrained adapter changes nothing. Pure torch: no ComfyUI import.

Besides nn.Linear, a set can adapt 1x1 convolutions: SD1.x's transformers project in and out with them
(SDXL's with Linear), and kohya's sd-scripts adapt them. A 1x1 convolution is a linear map over channels,
so its pair works along the channel axis, and its file weights are kohya's conv shapes, down
(rank, in, 1, 1) and up (out, rank, 1, 1).
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


def is_pointwise_conv(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.groups == 1 and module.padding in ((0, 0), "valid"))


def adaptable(module: nn.Module, pointwise_convs: bool) -> bool:
    return isinstance(module, nn.Linear) or (pointwise_convs and is_pointwise_conv(module))


def features(module: nn.Module) -> tuple[int, int]:
    """(in, out) of a Linear or a 1x1 Conv2d."""
    if isinstance(module, nn.Conv2d):
        return module.in_channels, module.out_channels
    return module.in_features, module.out_features


class LoRASet(nn.Module):
    """LoRA pairs for the nn.Linear modules of `root` whose names match `pattern`, and with `pointwise_convs`
    its matching 1x1 nn.Conv2d modules too; keys are module names."""

    def __init__(self, root: nn.Module, pattern: str, rank: int, alpha: float, pointwise_convs: bool = False):
        super().__init__()
        targets = {name: m for name, m in root.named_modules()
                   if adaptable(m, pointwise_convs) and re.search(pattern, name)}
        if not targets:
            kinds = "linear layer or 1x1 convolution" if pointwise_convs else "linear layer"
            raise ValueError(f"no {kinds} of the model matches {pattern!r}")
        self.names = sorted(targets)
        self.pairs = nn.ModuleDict({self._key(n): LoRAPair(*features(targets[n]), rank, alpha) for n in self.names})
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
                pair, target = self.pair(name), self._targets[name]
                channels_first = isinstance(target, nn.Conv2d)
                self._handles.append(target.register_forward_hook(
                    lambda module, args, out, pair=pair, channels_first=channels_first:
                        out + self._update(pair, args[0], channels_first).to(out.dtype)))
        return self

    @staticmethod
    def _update(pair: LoRAPair, x: torch.Tensor, channels_first: bool) -> torch.Tensor:
        """A pair's update of a Linear input (..., in), or of a 1x1 convolution's (N, in, H, W), over its channels."""
        return pair(x.movedim(1, -1)).movedim(-1, 1) if channels_first else pair(x)

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def file_weights(self, module_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(down, up) of a module's pair, detached, in the shapes kohya stores: (rank, in) and (out, rank) for a
        Linear, (rank, in, 1, 1) and (out, rank, 1, 1) for a 1x1 convolution."""
        pair = self.pair(module_name)
        down, up = pair.down.weight.detach(), pair.up.weight.detach()
        if isinstance(self._targets[module_name], nn.Conv2d):
            return down[..., None, None], up[..., None, None]
        return down, up
