"""The OSASIS style file: everything one trained style needs at inference, in one safetensors file.

Format `stylesmith.osasis_style`, version 1 (documented in docs/formats.md):
  tensors   lora_unet_<kohya name>.lora_down.weight / .lora_up.weight / .alpha   the style LoRA on the UNet
            (SD1.x, SDXL); diffusion_model.<module path>.lora_down.weight / ... on the transformer (Flux.2 Klein)
            spn.<key>                       the structure-preserving network (core/osasis/spn.py)
            reference.style, reference.photo  uint8 (H, W, 3) thumbnails of the style image and of its
                                              photoreal counterpart
  metadata  stylesmith.format = "osasis_style", stylesmith.format_version = "1", stylesmith.family,
            stylesmith.t0, stylesmith.steps, stylesmith.scheduler (the training schedule),
            stylesmith.spn_weight, stylesmith.spn_config (JSON), stylesmith.semantic (JSON: how z_sem was made),
            stylesmith.reference (JSON: style image and photoreal counterpart), stylesmith.base_checkpoint,
            stylesmith.base_checkpoint_sha256, stylesmith.training (JSON)
`load_osasis_style` is the only reader.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .safe_files import WeightFileError, check_format, read_safetensors, reading_metadata, write_safetensors_atomic
from ..osasis.spn import StructurePreservingNetwork

FORMAT = "osasis_style"
FORMAT_VERSION = "1"
WHAT = "OSASIS style"
SPN_PREFIX = "spn."
LORA_PREFIXES = ("lora_unet_", "diffusion_model.")   # kohya's names (SD1.x, SDXL), ComfyUI's (the DiT families)
THUMBNAILS = ("style", "photo")


@dataclass
class OsasisStyle:
    lora: dict[str, torch.Tensor]            # the denoiser's LoRA, named as the family's LoRA files name layers
                                             # (kohya or diffusion_model.*), as ComfyUI's LoRA loader takes it
    spn: StructurePreservingNetwork
    family: str
    t0: float
    steps: int
    scheduler: str
    spn_weight: float
    semantic: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    thumbnails: dict[str, torch.Tensor] = field(default_factory=dict)   # name -> uint8 (H, W, 3)
    base_checkpoint: str = ""
    base_checkpoint_sha256: str = ""
    training: dict = field(default_factory=dict)


def save_osasis_style(style: OsasisStyle, path) -> None:
    tensors = dict(style.lora)
    tensors.update({SPN_PREFIX + k: v for k, v in style.spn.state_dict().items()})
    tensors.update({f"reference.{k}": v.to(torch.uint8) for k, v in style.thumbnails.items()})
    metadata = {
        "stylesmith.format": FORMAT, "stylesmith.format_version": FORMAT_VERSION, "stylesmith.family": style.family,
        "stylesmith.t0": repr(style.t0), "stylesmith.steps": str(style.steps), "stylesmith.scheduler": style.scheduler,
        "stylesmith.spn_weight": repr(style.spn_weight), "stylesmith.spn_config": json.dumps(style.spn.config),
        "stylesmith.semantic": json.dumps(style.semantic, sort_keys=True),
        "stylesmith.reference": json.dumps(style.reference, sort_keys=True),
        "stylesmith.base_checkpoint": style.base_checkpoint,
        "stylesmith.base_checkpoint_sha256": style.base_checkpoint_sha256,
        "stylesmith.training": json.dumps(style.training, sort_keys=True),
    }
    write_safetensors_atomic(tensors, path, metadata, "OSASIS style")


def load_osasis_style(path) -> OsasisStyle:
    """Read an OSASIS style file; the SPN comes back in fp32, on the CPU, in eval mode."""
    path = Path(path)
    tensors, metadata = read_safetensors(path, WHAT)
    check_format(metadata, path, FORMAT, FORMAT_VERSION, "an OSASIS style",
                 "OSASIS styles come from `python -m trainers.osasis.train`; put them in models/osasis.")
    with reading_metadata(path, WHAT):
        spn = StructurePreservingNetwork(**json.loads(metadata["stylesmith.spn_config"]))
        own = {k[len(SPN_PREFIX):]: v.float() for k, v in tensors.items() if k.startswith(SPN_PREFIX)}
        expected = spn.state_dict()
        if set(own) != set(expected) or any(own[k].shape != v.shape for k, v in expected.items()):
            raise WeightFileError(f"{path.name}: the structure-preserving network's tensors do not match its own config "
                                  f"{metadata['stylesmith.spn_config']}. The file is damaged; train or export it again.")
        spn.load_state_dict(own)
        lora = {k: v for k, v in tensors.items() if k.startswith(LORA_PREFIXES)}
        if not lora:
            raise WeightFileError(f"{path.name} holds no denoiser LoRA (lora_unet_* or diffusion_model.* tensors). The "
                                  "file is damaged; train it again.")
        t0 = float(metadata["stylesmith.t0"])
        if not 0 < t0 <= 1:
            raise WeightFileError(f"{path.name} says t0 = {t0}, outside (0, 1]. The file is damaged; train it again.")
        return OsasisStyle(
            lora=lora, spn=spn.eval().requires_grad_(False), family=metadata["stylesmith.family"], t0=t0,
            steps=int(metadata["stylesmith.steps"]), scheduler=metadata["stylesmith.scheduler"],
            spn_weight=float(metadata["stylesmith.spn_weight"]),
            semantic=json.loads(metadata.get("stylesmith.semantic", "{}")),
            reference=json.loads(metadata.get("stylesmith.reference", "{}")),
            thumbnails={k: tensors[f"reference.{k}"] for k in THUMBNAILS if f"reference.{k}" in tensors},
            base_checkpoint=metadata.get("stylesmith.base_checkpoint", ""),
            base_checkpoint_sha256=metadata.get("stylesmith.base_checkpoint_sha256", ""),
            training=json.loads(metadata.get("stylesmith.training", "{}")))
