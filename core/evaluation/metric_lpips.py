"""LPIPS (Zhang et al. 2018) with the `lpips` package: its calibrated linear layers (shipped in the package)
on a torchvision AlexNet or VGG16 trunk whose ImageNet weights come from a file, never downloaded.

The trunk file is torchvision's own state dict (`alexnet-owt-7be5be79.pth`, `vgg16-397923af.pth`, as
torchvision caches them in `$TORCH_HOME/hub/checkpoints`); only its `features.*` tensors are used. The
lpips package splits torchvision's `features` into slices that keep each layer's index as its name, so
layer `features.<i>` is the slice child named `<i>`.
"""
import warnings
from pathlib import Path

import torch

from .weights import MetricUnavailable, read_weights
from ..data.image_preprocess import Preprocess, preprocess

TRUNK_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
SIZE = 256
TO_SIGNED = Preprocess(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))   # [0, 1] -> [-1, 1], as LPIPS takes


def default_trunk_file(net: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TRUNK_FILES[net]


class LPIPSDistance:
    def __init__(self, metric: torch.nn.Module):
        self.metric = metric

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Row-wise LPIPS of two (B, H, W, 3) batches in [0, 1], each resized and centre-cropped to 256 px."""
        return self.metric(preprocess(a, TO_SIGNED), preprocess(b, TO_SIGNED)).flatten()


def load_lpips(net: str = "alex", trunk_file: Path | None = None, random_trunk: bool = False) -> LPIPSDistance:
    """LPIPS on `net`; the trunk from `trunk_file` (default: torchvision's cache), or random with random_trunk."""
    try:
        import lpips
    except ImportError as e:
        raise MetricUnavailable("the lpips package is not installed: pip install lpips") from e
    if net not in TRUNK_FILES:
        raise MetricUnavailable(f"LPIPS net {net!r} is not one of {sorted(TRUNK_FILES)}")
    trunk = None
    if not random_trunk:
        path = Path(trunk_file) if trunk_file else default_trunk_file(net)
        trunk = {k[len("features."):]: v for k, v in read_weights(path, f"LPIPS {net} trunk").items()
                 if k.startswith("features.")}
        if not trunk:
            raise MetricUnavailable(f"{path.name} has no features.* tensors: it is not torchvision's {net} state dict")
    with warnings.catch_warnings():   # lpips still passes torchvision's deprecated `pretrained=False`
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        metric = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
    layers = {name: module for slice_ in metric.net.children() for name, module in slice_.named_children()}
    if trunk is not None:
        for name, module in layers.items():
            own = {k.split(".", 1)[1]: v for k, v in trunk.items() if k.split(".", 1)[0] == name}
            if set(own) != set(module.state_dict()):
                raise MetricUnavailable(f"the {net} trunk file lacks layer features.{name}; use torchvision's {TRUNK_FILES[net]}")
            module.load_state_dict(own, strict=True)
    linear = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    metric.lins.load_state_dict({k.removeprefix("lin"): v for k, v in read_weights(linear, "LPIPS linear layers").items()},
                                strict=True)
    return LPIPSDistance(metric.eval().requires_grad_(False))
