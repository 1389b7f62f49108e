"""Randomly initialised style encoders on the tiny open_clip backbone, for tests and the demo.

Heads are sized from the family's text encoders and scaled so the tokens have the spread of CLIP
token embeddings (std about 0.02). The authors' preprocessing (mean = std = 0.5) is recorded.
"""
import torch

from core.style_tokens.clip_backbones import TINY_VIT, backbone_config
from core.data.image_preprocess import Preprocess
from core.style_tokens.encoder import StyleEncoder, StyleEncoderConfig
from core.formats.style_encoder_file import save_style_encoder

TEXT_ENCODER_WIDTHS = {"sd15": {"clip_l": 768}, "sdxl": {"clip_l": 768, "clip_g": 1280}}
DEFAULT_STYLE_ENCODERS = {family: f"stylesmith-tiny-style-encoder-{family}.safetensors" for family in TEXT_ENCODER_WIDTHS}
AUTHORS_NORMALISATION = (0.5, 0.5, 0.5)


def build_style_encoder(family: str, seed: int, n_tokens: int = 8, architecture: str = TINY_VIT) -> StyleEncoder:
    """A random encoder on `architecture` (any open_clip name; full-size ones serve the benchmarks)."""
    backbone = backbone_config(architecture)
    config = StyleEncoderConfig(
        family=family, architecture=architecture, backbone_config=backbone,
        heads=dict(TEXT_ENCODER_WIDTHS[family]), n_tokens=n_tokens,
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
