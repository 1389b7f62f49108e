"""The style-encoder file: safetensors with the backbone, the projection heads and their metadata.

Format `stylesmith.style_encoder`, version 1 (documented in docs/formats.md):
  tensors   backbone.<open_clip visual key>     the vision tower (without CLIP's projection)
            heads.<key>.weight  (n_tokens*width, F)    one head per text encoder, named by its ComfyUI
                                                       embedding key ("clip_l", "clip_g"; "qwen3_4b" ...)
            heads.<key>.bias    (n_tokens*width,)
  metadata  stylesmith.format = "style_encoder", stylesmith.format_version = "1",
            stylesmith.family (the family trained with), stylesmith.architecture, stylesmith.backbone_config (JSON),
            stylesmith.heads (JSON embedding key -> width), stylesmith.n_tokens,
            stylesmith.preprocess (JSON size/mean/std/interpolation), stylesmith.training (JSON)
`load_style_encoder` is the only reader.
"""
import json
from pathlib import Path

from ..data.image_preprocess import Preprocess
from .safe_files import (
    WeightFileError,
    check_format,
    check_safetensors_file,
    read_safetensors,
    reading_metadata,
    write_safetensors_atomic,
)
from ..style_tokens.encoder import StyleEncoder, StyleEncoderConfig

FORMAT = "style_encoder"
FORMAT_VERSION = "1"
WHAT = "style encoder"


def save_style_encoder(encoder: StyleEncoder, path) -> None:
    c = encoder.config
    metadata = {
        "stylesmith.format": FORMAT, "stylesmith.format_version": FORMAT_VERSION,
        "stylesmith.family": c.family, "stylesmith.architecture": c.architecture,
        "stylesmith.backbone_config": json.dumps(c.backbone_config, sort_keys=True),
        "stylesmith.heads": json.dumps(c.heads), "stylesmith.n_tokens": str(c.n_tokens),
        "stylesmith.preprocess": json.dumps(c.preprocess.to_dict()),
        "stylesmith.training": json.dumps(c.training, sort_keys=True),
    }
    tensors = {f"backbone.{k}": v for k, v in encoder.backbone.state_dict().items()}
    tensors.update({f"heads.{k}": v for k, v in encoder.heads.state_dict().items()})
    write_safetensors_atomic(tensors, path, metadata, "style encoder")


def read_config(metadata: dict, path: Path) -> StyleEncoderConfig:
    check_format(metadata, path, FORMAT, FORMAT_VERSION, "a StyleSmith style encoder",
                 "Style encoders come from the style-token trainers; put them in models/style_encoders.")
    with reading_metadata(path, WHAT):
        return StyleEncoderConfig(
            family=metadata["stylesmith.family"], architecture=metadata["stylesmith.architecture"],
            backbone_config=json.loads(metadata["stylesmith.backbone_config"]),
            heads={k: int(v) for k, v in json.loads(metadata["stylesmith.heads"]).items()},
            preprocess=Preprocess.from_dict(json.loads(metadata["stylesmith.preprocess"])),
            n_tokens=int(metadata["stylesmith.n_tokens"]),
            training=json.loads(metadata.get("stylesmith.training", "{}")))


def load_style_encoder(path) -> StyleEncoder:
    """Read a style-encoder file into an fp32 StyleEncoder on the CPU, in eval mode."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, WHAT)
    encoder = StyleEncoder(read_config(metadata, path))
    expected = {f"backbone.{k}" for k in encoder.backbone.state_dict()} | {f"heads.{k}" for k in encoder.heads.state_dict()}
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise WeightFileError(f"{path.name} does not match its own architecture {encoder.config.architecture!r}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}. The file is damaged; export it again.")
    for prefix, module in (("backbone.", encoder.backbone), ("heads.", encoder.heads)):
        own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        for key, value in module.state_dict().items():
            if own[key].shape != value.shape:
                raise WeightFileError(f"{path.name}: tensor {prefix}{key} has shape {tuple(own[key].shape)}, "
                                      f"its architecture needs {tuple(value.shape)}. The file is damaged; export it again.")
        module.load_state_dict({k: v.float() for k, v in own.items()}, strict=True)
    return encoder.float().eval().requires_grad_(False)


def is_style_encoder_file(path) -> bool:
    """Whether a safetensors file says, in its metadata, that it is a StyleSmith style encoder."""
    from safetensors import safe_open
    path = check_safetensors_file(path, "style encoder or CLIP vision model")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        return (f.metadata() or {}).get("stylesmith.format") == FORMAT
