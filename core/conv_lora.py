"""LoRA for 1x1 convolutions, the twin of core.lora.LoRASet (which adapts nn.Linear only).

SD1.x transformers project in and out with 1x1 Conv2d (SDXL's use Linear), and kohya's sd-scripts adapt them. A
1x1 convolution is a linear map over channels, so its adapter is a LoRAPair applied along the channel axis; the
file holds its weights as kohya writes conv LoRAs, down (rank, in, 1, 1) and up (out, rank, 1, 1).
"""
import re

from torch import nn

from .lora import LoRAPair


def is_pointwise_conv(module: nn.Module) -> bool:
    return (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.stride == (1, 1)
            and module.groups == 1 and module.padding in ((0, 0), "valid"))


def pointwise_convs(root: nn.Module, pattern: str) -> dict[str, nn.Conv2d]:
    return {name: m for name, m in root.named_modules() if is_pointwise_conv(m) and re.search(pattern, name)}


def channels_last(pair: LoRAPair, x):
    """A pair's update of a (N, C, H, W) input, applied over C."""
    return pair(x.movedim(1, -1)).movedim(-1, 1)


class PointwiseConvLoRASet(nn.Module):
    """LoRA pairs for the 1x1 nn.Conv2d modules of `root` whose names match `pattern`; LoRASet's interface."""

    def __init__(self, root: nn.Module, pattern: str, rank: int, alpha: float):
        super().__init__()
        targets = pointwise_convs(root, pattern)
        if not targets:
            raise ValueError(f"no 1x1 convolution of the model matches {pattern!r}")
        self.names = sorted(targets)
        self.pairs = nn.ModuleDict({n.replace(".", "__"): LoRAPair(targets[n].in_channels, targets[n].out_channels,
                                                                   rank, alpha) for n in self.names})
        self._targets = targets
        self._handles = []

    def pair(self, module_name: str) -> LoRAPair:
        return self.pairs[module_name.replace(".", "__")]

    def attach(self) -> "PointwiseConvLoRASet":
        if not self._handles:
            for name in self.names:
                pair = self.pair(name)
                self._handles.append(self._targets[name].register_forward_hook(
                    lambda module, args, out, pair=pair: out + channels_last(pair, args[0]).to(out.dtype)))
        return self

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def file_shape(weight):
        """A pair's (rows, cols) weight as kohya stores a conv LoRA weight: (rows, cols, 1, 1)."""
        return weight[..., None, None]
