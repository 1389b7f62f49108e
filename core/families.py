"""The one registry of model families StyleSmith serves: what every file, node, trainer and message knows of them.

A family's key ("sd15", "sdxl") is what files, command lines and metadata store; its display name is what
messages show. Nothing here imports ComfyUI: the facts ComfyUI exposes at run time (its model-config class
names, its CLIP token keys) are recorded as plain strings, and comfy_adapter reads ComfyUI objects against
them. A new family (Flux is next) is one more entry here plus its adapter code.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelFamily:
    key: str                              # stored in metadata and given on command lines
    display_name: str                     # shown in messages
    text_encoders: dict                   # ComfyUI's CLIP token key ("clip_l") -> embedding width, in the order
                                          # ComfyUI concatenates their outputs into the context; style-token heads
    pooled_text_encoder: str              # the text encoder whose pooled output is the conditioning's pooled_output
    context_width: int                    # width of the UNet's cross-attention context (the text encoders' concat)
    latent_channels: int
    checkpoint_marker: str                # a tensor-name prefix only this family's single-file checkpoints hold
    comfy_model_configs: tuple            # ComfyUI model-config classes (or their bases) detected as this family
    kohya_unet_naming: str                # UNet LoRA names as kohya's sd-scripts write them: "diffusers" or "ldm"
    kohya_text_encoder_prefixes: tuple    # one LoRA name prefix per text encoder, in text_encoders' order
    modelspec_architecture: str           # modelspec.architecture of this family's LoRAs
    kohya_base_version: str               # ss_base_model_version of this family's LoRAs


FAMILIES = {
    "sd15": ModelFamily(
        key="sd15", display_name="SD1.x", text_encoders={"clip_l": 768}, pooled_text_encoder="clip_l",
        context_width=768, latent_channels=4,
        checkpoint_marker="cond_stage_model.transformer.", comfy_model_configs=("SD15",),
        kohya_unet_naming="diffusers", kohya_text_encoder_prefixes=("lora_te_",),
        modelspec_architecture="stable-diffusion-v1/lora", kohya_base_version="sd_v1"),
    # SDXL-family files (SDXL, SSD-1B, Segmind Vega, KOALA) hold clip_l at embedders.0, clip_g (open_clip form) at 1.
    "sdxl": ModelFamily(
        key="sdxl", display_name="SDXL", text_encoders={"clip_l": 768, "clip_g": 1280},
        pooled_text_encoder="clip_g", context_width=2048,
        latent_channels=4, checkpoint_marker="conditioner.embedders.1.model.", comfy_model_configs=("SDXL",),
        kohya_unet_naming="ldm", kohya_text_encoder_prefixes=("lora_te1_", "lora_te2_"),
        modelspec_architecture="stable-diffusion-xl-v1-base/lora", kohya_base_version="sdxl_base_v1-0"),
}
SUPPORTED = " and ".join(f.display_name for f in FAMILIES.values())      # "SD1.x and SDXL"
ANY_SUPPORTED = " or ".join(f.display_name for f in FAMILIES.values())   # "SD1.x or SDXL"


def get_family(key: str) -> ModelFamily:
    if key not in FAMILIES:
        raise ValueError(f"Unknown model family {key!r}: StyleSmith serves {', '.join(FAMILIES)} ({SUPPORTED}).")
    return FAMILIES[key]


def display_name(key: str | None) -> str:
    """The family's name for messages; an unknown key is shown as it is."""
    return FAMILIES[key].display_name if key in FAMILIES else str(key)


def family_of_text_encoders(widths: dict[str, int]) -> ModelFamily | None:
    """The family whose text encoders are exactly these ({"clip_l": 768} -> SD1.x), or None."""
    return next((f for f in FAMILIES.values() if f.text_encoders == widths), None)


def family_of_context_width(width: int) -> ModelFamily | None:
    return next((f for f in FAMILIES.values() if f.context_width == width), None)


def family_of_checkpoint_keys(keys) -> ModelFamily | None:
    keys = list(keys)
    return next((f for f in FAMILIES.values() if any(k.startswith(f.checkpoint_marker) for k in keys)), None)


def family_of_comfy_config(class_names: set[str]) -> ModelFamily | None:
    """The family of a ComfyUI model config, given the names of its class and its bases."""
    return next((f for f in FAMILIES.values() if class_names & set(f.comfy_model_configs)), None)
