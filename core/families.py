"""The one registry of model families StyleSmith serves: what every file, node, trainer and message knows of them.

A family's key ("sd15", "sdxl") is what files, command lines and metadata store; its display name is what messages
show. A family names its denoiser (a UNet with resolution levels, or a transformer with blocks), its text encoders
(each by ComfyUI's embedding key and width: CLIP, T5 or an LLM), where its pooled vector comes from, its latent, and
how its LoRA files name layers. Nothing here imports ComfyUI: the facts ComfyUI exposes at run time (model-config
class names, embedding keys) are recorded as plain strings, and comfy_adapter reads ComfyUI objects against them.

A style-token head belongs to a text encoder, not to a family: a head for `clip_l` (768) serves every family whose
text encoders include clip_l. A new family is one more entry here plus its adapter code.
"""
from dataclasses import dataclass

UNET = "unet"                 # resolution levels with cross-attention to the text context (SD1.x, SDXL)
TRANSFORMER = "transformer"   # a stack of blocks over image and text tokens (Flux, Z-Image)


@dataclass(frozen=True)
class TextEncoder:
    key: str       # ComfyUI's embedding key, which `embedding:` files and style-token heads use: "clip_l", "qwen3_4b"
    width: int     # width of its input token embeddings: what a style-token head for it outputs
    kind: str      # "clip", "t5" or "llm": how its tokenizer marks a prompt (start/end tokens, chat template)


@dataclass(frozen=True)
class LoraNaming:
    """How this family's LoRA files name the layers they adapt, as the tools its users have write them."""
    style: str                           # "kohya" (lora_unet_* / lora_te*_) or "comfy" (diffusion_model.<module path>)
    kohya_unet: str = ""                 # kohya's UNet block names: "diffusers" (SD1) or "ldm" (SDXL)
    text_encoder_prefixes: tuple = ()    # one kohya prefix per text encoder, in text_encoders' order
    modelspec_architecture: str = ""     # modelspec.architecture of this family's LoRAs
    kohya_base_version: str = ""         # ss_base_model_version of this family's LoRAs


@dataclass(frozen=True)
class ModelFamily:
    key: str                              # stored in metadata and given on command lines
    display_name: str                     # shown in messages
    denoiser: str                         # UNET or TRANSFORMER
    encoders: tuple                       # TextEncoder per text encoder, in the order ComfyUI concatenates outputs
    pooled_from: str | None               # key of the encoder whose pooled output is the conditioning's
                                          # pooled_output; None when the family has no pooled vector
    context_width: int                    # width of the text context the denoiser attends to
    latent_channels: int
    latent_downscale: int                 # image pixels per latent pixel, per side
    lora: LoraNaming
    comfy_model_configs: tuple            # ComfyUI model-config classes (or their bases) detected as this family
    checkpoint_marker: str = ""           # a tensor-name prefix only this family's single-file checkpoints hold

    @property
    def text_encoders(self) -> dict[str, int]:
        """{embedding key: width}, in the order ComfyUI concatenates the encoders' outputs."""
        return {e.key: e.width for e in self.encoders}


FAMILIES = {
    "sd15": ModelFamily(
        key="sd15", display_name="SD1.x", denoiser=UNET, encoders=(TextEncoder("clip_l", 768, "clip"),),
        pooled_from="clip_l", context_width=768, latent_channels=4, latent_downscale=8,
        lora=LoraNaming("kohya", kohya_unet="diffusers", text_encoder_prefixes=("lora_te_",),
                        modelspec_architecture="stable-diffusion-v1/lora", kohya_base_version="sd_v1"),
        comfy_model_configs=("SD15",), checkpoint_marker="cond_stage_model.transformer."),
    # SDXL-family files (SDXL, SSD-1B, Segmind Vega, KOALA) hold clip_l at embedders.0, clip_g (open_clip form) at 1.
    "sdxl": ModelFamily(
        key="sdxl", display_name="SDXL", denoiser=UNET,
        encoders=(TextEncoder("clip_l", 768, "clip"), TextEncoder("clip_g", 1280, "clip")),
        pooled_from="clip_g", context_width=2048, latent_channels=4, latent_downscale=8,
        lora=LoraNaming("kohya", kohya_unet="ldm", text_encoder_prefixes=("lora_te1_", "lora_te2_"),
                        modelspec_architecture="stable-diffusion-xl-v1-base/lora", kohya_base_version="sdxl_base_v1-0"),
        comfy_model_configs=("SDXL",), checkpoint_marker="conditioner.embedders.1.model."),
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
    """The first family whose text encoders are exactly these ({"clip_l": 768} -> SD1.x), or None."""
    return next((f for f in FAMILIES.values() if f.text_encoders == widths), None)


def families_using(widths: dict[str, int]) -> list[ModelFamily]:
    """Every family whose text encoders all have a head among `widths` (embedding key -> width): the families that
    style tokens with these heads serve."""
    return [f for f in FAMILIES.values() if all(widths.get(k) == w for k, w in f.text_encoders.items())]


def family_of_context_width(width: int) -> ModelFamily | None:
    return next((f for f in FAMILIES.values() if f.context_width == width), None)


def family_of_checkpoint_keys(keys) -> ModelFamily | None:
    keys = list(keys)
    return next((f for f in FAMILIES.values()
                 if f.checkpoint_marker and any(k.startswith(f.checkpoint_marker) for k in keys)), None)


def family_of_comfy_config(class_names: set[str]) -> ModelFamily | None:
    """The family of a ComfyUI model config, given the names of its class and its bases."""
    return next((f for f in FAMILIES.values() if class_names & set(f.comfy_model_configs)), None)
