"""CLIP scores with open_clip: CLIP-T (text alignment) and image-image cosine (style, content).

    CLIP-T(image, prompt) = 100 * max(cos(E_I(image), E_T(prompt)), 0)

as in CLIPScore (Hessel et al. 2021, eq. 1, with torchmetrics' weight 100 instead of 2.5). The model is
  - `ARCH:TAG`   an open_clip architecture and pretrained tag, e.g. `ViT-L-14:openai` (open_clip fetches or
                 reuses its cached weights);
  - `ARCH:FILE`  an open_clip architecture and a state-dict file of the whole model (safetensors, or a torch file
                 open_clip reads with weights_only=True);
  - `FILE`       a ComfyUI models/clip_vision file (Hugging Face CLIPVisionModelWithProjection layout): image
                 cosines only, since it has no text tower;
  - `ARCH`       with random_init only: random weights (tests; the numbers mean nothing).
"""
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..style_tokens.clip_backbones import open_clip_with_configs
from ..formats.clip_vision_import import architecture_name, open_clip_config_from_clip_vision, open_clip_visual_state
from .weights import MetricUnavailable, read_weights
from ..data.image_preprocess import Preprocess, preprocess

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass
class ClipModel:
    """An open_clip model (or only its visual tower), its preprocessing and, with a text tower, its tokenizer."""
    name: str
    visual: torch.nn.Module
    preprocess: Preprocess
    model: torch.nn.Module | None = None      # the whole CLIP model; None for a vision-only file
    tokenizer: object = None

    @property
    def has_text(self) -> bool:
        return self.model is not None

    @torch.no_grad()
    def image_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """(B, H, W, 3) in [0, 1] -> (B, D) unit vectors."""
        pixels = preprocess(images, self.preprocess)
        features = self.model.encode_image(pixels) if self.model is not None else self.visual(pixels)
        return F.normalize(features.float(), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        if self.model is None:
            raise MetricUnavailable(f"{self.name} is a vision-only model, it cannot embed text")
        return F.normalize(self.model.encode_text(self.tokenizer(texts)).float(), dim=-1)


def clip_t(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Row-wise CLIP-T of unit image and text embeddings: 100 * max(cos, 0)."""
    return 100 * (image_embeddings * text_embeddings).sum(-1).clamp(min=0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine similarity of two (B, D) batches."""
    return F.cosine_similarity(a.flatten(1).float(), b.flatten(1).float(), dim=1)


def _preprocess_of(model) -> Preprocess:
    cfg = open_clip_with_configs().get_model_preprocess_cfg(model)
    size = cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"]
    return Preprocess(size=int(size), mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                      interpolation=cfg.get("interpolation", "bicubic"))


def _whole_model(architecture: str, pretrained: str | None, name: str) -> ClipModel:
    """open_clip's model; `pretrained` a tag or a state-dict file (open_clip reads it with weights_only=True)."""
    open_clip = open_clip_with_configs()
    if architecture not in open_clip.list_models():
        raise MetricUnavailable(f"open_clip has no architecture {architecture!r} (--clip {name}); "
                                "pick one of open_clip.list_models(), e.g. ViT-L-14")
    try:
        model = open_clip.create_model(architecture, pretrained=pretrained, require_pretrained=pretrained is not None)
    except Exception as e:     # open_clip raises RuntimeError, HF hub errors, OSError when offline, ...
        raise MetricUnavailable(f"open_clip could not load {name} ({type(e).__name__}: {' '.join(str(e).split())[:300]}); "
                                "run once with network access so open_clip caches it, or pass ARCH:FILE") from e
    model = model.float().eval().requires_grad_(False)
    return ClipModel(name=name, visual=model.visual, preprocess=_preprocess_of(model), model=model,
                     tokenizer=open_clip.get_tokenizer(architecture))


def _vision_only(path: Path) -> ClipModel:
    """A models/clip_vision file -> open_clip visual tower with CLIP's projection (embeddings comparable to CLIP's)."""
    from ..formats.clip_vision_import import CLIP_MEAN, CLIP_STD
    tensors = read_weights(path, "CLIP vision")
    try:
        config = open_clip_config_from_clip_vision(tensors)
        state = open_clip_visual_state(tensors)
    except (ValueError, KeyError) as e:
        raise MetricUnavailable(f"{path.name} is not a CLIP vision model in Hugging Face layout ({e}); "
                                "use a models/clip_vision file or ARCH:FILE for a whole open_clip model") from e
    open_clip = open_clip_with_configs()
    architecture = architecture_name(config)
    if open_clip.get_model_config(architecture) != config:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / f"{architecture}.json").write_text(json.dumps(config))
            open_clip.add_model_config(Path(tmp) / f"{architecture}.json")
    visual = open_clip.create_model(architecture, pretrained=None).visual
    if "proj" not in state:
        visual.proj = None
    visual.load_state_dict(state, strict=True)
    size = config["vision_cfg"]["image_size"]
    return ClipModel(name=path.name, visual=visual.float().eval().requires_grad_(False),
                     preprocess=Preprocess(size=size, mean=CLIP_MEAN, std=CLIP_STD))


def load_clip(spec: str, random_init: bool = False, clip_vision_dir: Path | None = None, seed: int = 0) -> ClipModel:
    """The CLIP model named by `spec` (see the module docstring); MetricUnavailable saying why not.

    With random_init, an `ARCH` or `ARCH:TAG` spec gets random weights instead (files are still read)."""
    architecture, _, source = spec.partition(":")
    if source and (source.lower().endswith(WEIGHT_SUFFIXES) or Path(source).exists()):
        if not Path(source).is_file():
            raise MetricUnavailable(f"the open_clip weights file {source} does not exist")
        return _whole_model(architecture, source, spec)
    path = Path(spec)
    if clip_vision_dir is not None and not path.is_file() and (clip_vision_dir / spec).is_file():
        path = clip_vision_dir / spec
    if not source and path.suffix.lower() in WEIGHT_SUFFIXES:
        return _vision_only(path)
    if random_init:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return _whole_model(architecture, None, f"{architecture} (random weights)")
    if not source:
        raise MetricUnavailable(f"--clip {spec} names no weights: give ARCH:TAG (e.g. ViT-L-14:openai), "
                                "ARCH:FILE or a models/clip_vision file (random weights only with --random-init)")
    return _whole_model(architecture, source, spec)
