"""Score generated images: per image (text alignment, style, content) and per method (FID, KID).

Per-image columns, each present only when its model is loaded (`PER_IMAGE` says which model):
  clip_t         100 * max(cos(CLIP image, CLIP text of the prompt), 0)
  style_clip     cos(CLIP image of the output, CLIP image of the reference)
  style_csd      cos of CSD style descriptors, output vs reference
  style_tokens   cos of our style encoder's tokens, output vs reference
  content_lpips  LPIPS(output, content image): lower keeps more of the content
  content_clip   cos(CLIP image of the output, CLIP image of the content image)
Rows without a content image get NaN content scores. Per method: FID and KID of its images against the
real set (the references, unless another folder is given), in Inception features.
"""
import math
from collections import defaultdict
from dataclasses import dataclass, field
from functools import partial

import torch
from tqdm import tqdm

from .images import read_image
from .manifest import EvalRow
from .metric_clip import ClipModel, clip_t, cosine
from .metric_csd import CSD
from .metric_inception import InceptionFeatures, fid, kid
from .metric_lpips import LPIPSDistance
from .metric_style_tokens import style_tokens
from ..style_tokens.encoder import StyleEncoder

PER_IMAGE = {"clip_t": "clip_text", "style_clip": "clip", "style_csd": "csd", "style_tokens": "style_encoder",
             "content_lpips": "lpips", "content_clip": "clip"}
LOWER_IS_BETTER = {"content_lpips", "fid", "kid"}


@dataclass
class Metrics:
    """The loaded metric models; None where a model is missing (its columns are left out)."""
    clip: ClipModel | None = None
    csd: CSD | None = None
    style_encoder: StyleEncoder | None = None
    lpips: LPIPSDistance | None = None
    inception: InceptionFeatures | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def loaded(self, kind: str) -> bool:
        if kind == "clip_text":
            return self.clip is not None and self.clip.has_text
        return getattr(self, kind) is not None

    def columns(self) -> list[str]:
        return [column for column, kind in PER_IMAGE.items() if self.loaded(kind)]


class _Cached:
    """One embedding per (model, image file): references and content images recur across methods and seeds."""

    def __init__(self, device):
        self.device, self.values = device, {}

    def __call__(self, name: str, fn, path) -> torch.Tensor:
        key = (name, str(path))
        if key not in self.values:
            self.values[key] = fn(read_image(path).to(self.device)).cpu()
        return self.values[key]


def score_images(rows: list[EvalRow], metrics: Metrics) -> list[dict[str, float]]:
    """One dict of scores per row, in row order, with the keys of metrics.columns()."""
    cached, texts, scores = _Cached(metrics.device), {}, []
    clip_embed = metrics.clip.image_embeddings if metrics.clip is not None else None
    for row in tqdm(rows, desc="scoring images", unit="image"):
        s = {}
        if metrics.clip is not None:
            out = cached("clip", clip_embed, row.image)
            if metrics.clip.has_text:
                if row.prompt not in texts:
                    texts[row.prompt] = metrics.clip.text_embeddings([row.prompt]).cpu()
                s["clip_t"] = float(clip_t(out, texts[row.prompt])[0])
            s["style_clip"] = float(cosine(out, cached("clip", clip_embed, row.reference))[0])
        if metrics.csd is not None:
            embed = metrics.csd.style_embeddings
            s["style_csd"] = float(cosine(cached("csd", embed, row.image), cached("csd", embed, row.reference))[0])
        if metrics.style_encoder is not None:
            embed = partial(style_tokens, metrics.style_encoder)
            s["style_tokens"] = float(cosine(cached("tokens", embed, row.image), cached("tokens", embed, row.reference))[0])
        if metrics.lpips is not None:
            s["content_lpips"] = math.nan if row.content is None else float(metrics.lpips(
                read_image(row.image).to(metrics.device), read_image(row.content).to(metrics.device))[0])
        if metrics.clip is not None:
            s["content_clip"] = math.nan if row.content is None else float(
                cosine(cached("clip", clip_embed, row.image), cached("clip", clip_embed, row.content))[0])
        scores.append({column: s[column] for column in metrics.columns()})
    return scores


def score_sets(rows: list[EvalRow], inception: InceptionFeatures, real_images: list, device) -> dict[str, dict]:
    """{method: {"fid", "kid", "kid_std", "n"}} against `real_images` (paths); NaN where a set is too small."""
    def features(paths, what):
        return torch.cat([inception(read_image(p).to(device)).cpu() for p in tqdm(paths, desc=what, unit="image")])

    real = features(real_images, "Inception: real set")
    by_method = defaultdict(list)
    for row in rows:
        by_method[row.method].append(row.image)
    results = {}
    for method, images in by_method.items():
        fake = features(images, f"Inception: {method}")
        if len(fake) < 2 or len(real) < 2:      # a covariance needs two samples
            results[method] = {"fid": math.nan, "kid": math.nan, "kid_std": math.nan, "n": len(fake)}
            continue
        kid_mean, kid_std = kid(real, fake)
        results[method] = {"fid": fid(real, fake), "kid": kid_mean, "kid_std": kid_std, "n": len(fake)}
    return results
