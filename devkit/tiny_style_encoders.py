"""Randomly initialised style encoders on the tiny open_clip backbone, for tests and the demo.

Heads are sized from the family's text encoders (core/families.py) and scaled so the tokens have the spread of
CLIP token embeddings (std about 0.02). The authors' preprocessing (mean = std = 0.5) is recorded. A head belongs to
a text encoder, so the Klein encoder's one `qwen3_4b` head serves Z-Image too: one file for both.
"""
import torch

from core.families import get_family
from core.style_tokens.clip_backbones import TINY_VIT, backbone_config
from core.data.image_preprocess import Preprocess
from core.style_tokens.encoder import StyleEncoder, StyleEncoderConfig
from core.formats.style_encoder_file import save_style_encoder

BUILT_FOR = ("sd15", "sdxl", "klein", "flux1")   # one encoder per set of text encoders
DEFAULT_STYLE_ENCODERS = {family: f"stylesmith-tiny-style-encoder-{family}.safetensors" for family in BUILT_FOR}
DEFAULT_STYLE_ENCODERS["zimage"] = DEFAULT_STYLE_ENCODERS["klein"]   # Z-Image encodes with Klein's Qwen3-4B
AUTHORS_NORMALISATION = (0.5, 0.5, 0.5)


def build_style_encoder(family: str, seed: int, n_tokens: int = 8, architecture: str = TINY_VIT) -> StyleEncoder:
    """A random encoder on `architecture` (any open_clip name; full-size ones serve the benchmarks)."""
    backbone = backbone_config(architecture)
    config = StyleEncoderConfig(
        family=family, architecture=architecture, backbone_config=backbone,
        heads=get_family(family).text_encoders, n_tokens=n_tokens,
        preprocess=Preprocess(size=backbone["vision_cfg"]["image_size"], mean=AUTHORS_NORMALISATION,
                              std=AUTHORS_NORMALISATION),
        training={"stage": "random-init", "seed": seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = StyleEncoder(config)
        with torch.no_grad():
            for head in encoder.heads.values():
                head.weight.normal_(0.0, 0.02 / head.in_features ** 0.5)
                head.bias.zero_()
    return encoder.eval()


def build_style_encoder_file(path, family: str, seed: int, architecture: str = TINY_VIT) -> None:
    save_style_encoder(build_style_encoder(family, seed, architecture=architecture), path)
