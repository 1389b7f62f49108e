"""StyleForge LoRA files: kohya-keyed LoRA tensors plus trigger metadata, and reading triggers from
LoRAs made elsewhere.

Tensors (what ComfyUI's LoraLoader, A1111 and Forge load), per adapted linear layer NAME:
    NAME.lora_down.weight (rank, in)   NAME.lora_up.weight (out, rank)   NAME.alpha ()
with NAME a kohya name: `lora_unet_...` (SD1: diffusers block names; SDXL: LDM block names, as
kohya's sd-scripts write them), `lora_te_...` (SD1 text encoder), `lora_te1_...`/`lora_te2_...`
(SDXL clip_l / clip_g). Metadata: see docs/formats.md. `read_lora` is the one reader.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..families import FAMILIES, family_of_context_width, get_family
from .safe_files import WeightFileError, read_safetensors, reading_metadata, write_safetensors_atomic

FORMAT = "styleforge_lora"
FORMAT_VERSION = "1"


@dataclass
class Component:
    name: str             # e.g. "style", "characters", "backgrounds"
    identifier: str       # the rare token bound to it, e.g. "zwx"
    class_word: str       # the class noun of the prior prompt, e.g. "style"

    @property
    def trigger(self) -> str:
        return f"{self.identifier} {self.class_word}".strip()


@dataclass
class LoraInfo:
    family: str | None                         # "sd15", "sdxl", or None when nothing tells
    components: list[Component] = field(default_factory=list)
    source: str = ""                           # where the triggers came from: stylesmith, modelspec, kohya, none


def write_lora(tensors: dict[str, torch.Tensor], path, family: str, components: list[Component],
               base_checkpoint: str, base_sha256: str, rank: int, alpha: float, training: dict) -> None:
    triggers = ", ".join(c.trigger for c in components)
    spec = get_family(family)
    metadata = {
        "stylesmith.format": FORMAT, "stylesmith.format_version": FORMAT_VERSION, "stylesmith.family": family,
        "stylesmith.components": json.dumps([{"name": c.name, "identifier": c.identifier, "class_word": c.class_word,
                                              "trigger": c.trigger} for c in components]),
        "stylesmith.base_checkpoint": base_checkpoint, "stylesmith.base_checkpoint_sha256": base_sha256,
        "stylesmith.training": json.dumps(training, sort_keys=True),
        "modelspec.sai_model_spec": "1.0.0", "modelspec.architecture": spec.lora.modelspec_architecture,
        "modelspec.implementation": "https://github.com/kohya-ss/sd-scripts", "modelspec.title": Path(path).stem,
        "modelspec.trigger_phrase": triggers,
        "ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
        "ss_base_model_version": spec.lora.kohya_base_version, "ss_output_name": Path(path).stem,
    }
    write_safetensors_atomic(tensors, path, metadata, "LoRA")


def family_from_tensors(tensors: dict[str, torch.Tensor]) -> str | None:
    """A family's last text-encoder prefix (SDXL's lora_te2_) tells; otherwise the cross-attention key width."""
    for family in FAMILIES.values():
        prefixes = family.lora.text_encoder_prefixes
        if len(prefixes) > 1 and any(k.startswith(prefixes[-1]) for k in tensors):
            return family.key
    for key, value in tensors.items():
        if "attn2" in key and "to_k" in key and key.endswith("lora_down.weight"):
            family = family_of_context_width(value.shape[1])
            return family.key if family else None
    return None


def _family_from_metadata(metadata: dict) -> str | None:
    if metadata.get("stylesmith.family") in FAMILIES:
        return metadata["stylesmith.family"]
    architecture = metadata.get("modelspec.architecture", "") + metadata.get("ss_base_model_version", "")
    if "xl" in architecture.lower():
        return "sdxl"
    if "v1" in architecture.lower() or "sd_v1" in architecture:
        return "sd15"
    return None


def _components_from_metadata(metadata: dict) -> tuple[list[Component], str]:
    if "stylesmith.components" in metadata:
        return [Component(c["name"], c["identifier"], c["class_word"])
                for c in json.loads(metadata["stylesmith.components"])], "stylesmith"
    if metadata.get("modelspec.trigger_phrase", "").strip():
        phrases = [p.strip() for p in metadata["modelspec.trigger_phrase"].split(",") if p.strip()]
        return [Component(f"trigger {i + 1}", p, "") for i, p in enumerate(phrases)], "modelspec"
    if metadata.get("ss_tag_frequency"):
        frequencies: dict[str, int] = {}
        for tags in json.loads(metadata["ss_tag_frequency"]).values():
            for tag, count in tags.items():
                frequencies[tag.strip()] = frequencies.get(tag.strip(), 0) + count
        top = sorted(frequencies, key=lambda t: -frequencies[t])[:1]
        return [Component("kohya top tag", t, "") for t in top], "kohya"
    return [], "none"


def read_lora(path) -> tuple[dict[str, torch.Tensor], LoraInfo]:
    """Tensors and what we know of a LoRA file (ours or made elsewhere): family and trigger words."""
    tensors, metadata = read_safetensors(path, "LoRA")
    if not any(k.endswith((".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight",
                           ".hada_w1_a", ".lokr_w1")) for k in tensors):
        raise WeightFileError(f"{Path(path).name} holds no LoRA weights (no lora_down/lora_up tensors): "
                              "pick a LoRA file from models/loras.")
    with reading_metadata(path, "LoRA"):
        components, source = _components_from_metadata(metadata)
        family = _family_from_metadata(metadata) or family_from_tensors(tensors)
    return tensors, LoraInfo(family=family, components=components, source=source)
