"""FID and KID with torchmetrics on the standard FID Inception (torch-fidelity's port of TensorFlow's
2015-12-05 graph, the network pytorch-fid, clean-fid and torchmetrics report with).

Its weights file is torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`, a plain state dict.
torch-fidelity unpickles a given path without weights_only, so we read the file ourselves with
weights_only=True (or safetensors) and hand torch-fidelity a re-saved copy holding only those tensors.
Features are computed once per image; FID and KID are then torchmetrics' own computations on them.
Images are resized to 299 px as torch-fidelity and the TensorFlow graph do (bilinear, no antialiasing):
torchmetrics' wrapper antialiases by default, which moves the features of any other size (1.5% at 80 px).
"""
import tempfile
from pathlib import Path

import torch

from .images import to_uint8
from .weights import MetricUnavailable, read_weights, tensors_under

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
FEATURE_SIZES = (2048, 768, 192, 64)   # torch-fidelity's taps; 2048 (the final pool) is the standard FID


def default_weights_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def random_inception_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights of the same architecture (torchvision's InceptionV3 shares torch-fidelity's names).

    Convolutions are He-initialised: torchvision's own init (std 0.1) grows activations about 2x per layer and
    PyTorch's default shrinks them, so over 90-odd layers features would be ~1e10 or ~1e-8; He keeps them near 1."""
    import torchvision
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.state_dict()


class InceptionFeatures:
    def __init__(self, state: dict[str, torch.Tensor], features: int = 2048):
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3
        except ImportError as e:
            raise MetricUnavailable("torchmetrics (with torch-fidelity) is not installed: "
                                    "pip install torchmetrics torch-fidelity") from e
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / WEIGHTS_FILE
            torch.save({k: v.float() for k, v in state.items()}, copy)
            try:
                self.net = NoTrainInceptionV3("inception-v3-compat", [str(features)], str(copy), antialias=False)
            except RuntimeError as e:
                raise MetricUnavailable(f"the Inception weights do not fit the FID Inception "
                                        f"({' '.join(str(e).split())[:300]}); use {WEIGHTS_FILE}") from e

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] -> (B, features) Inception features."""
        return self.net(to_uint8(images)).double()


def load_inception(path: Path | None = None, random_init: bool = False, features: int = 2048) -> InceptionFeatures:
    """Inception from `path` (default: torch hub's cache), or random weights with random_init and no path.
    `features` picks the tap: 2048 is the standard FID; the smaller ones are torchmetrics' cheap variants
    (FID's matrix square root costs O(features^3))."""
    if features not in FEATURE_SIZES:
        raise MetricUnavailable(f"Inception features {features} is not one of {FEATURE_SIZES}")
    if random_init and path is None:
        return InceptionFeatures(random_inception_state(), features)
    path = Path(path) if path else default_weights_file()
    return InceptionFeatures(tensors_under(read_weights(path, "FID Inception"), "state_dict"), features)


class _Precomputed(torch.nn.Module):
    """Lets torchmetrics take features we already computed in place of images."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID between two (N, D) feature sets (torchmetrics); each needs at least 2 rows."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    metric = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kid(real: torch.Tensor, fake: torch.Tensor, subsets: int = 100, seed: int = 0) -> tuple[float, float]:
    """(mean, std) of KID over random subsets of min(len(real), len(fake), 1000) (torchmetrics, polynomial kernel)."""
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets,
                                         subset_size=min(len(real), len(fake), 1000))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)
