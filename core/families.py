"""The one registry of model families StyleSmith serves: what every file, node, trainer and message knows of them.

A family's key ("sd15", "klein") is what files, command lines and metadata store; its display name is what messages
show. A family names its denoiser (a UNet with resolution levels, or a transformer with blocks), its text encoders
(each by ComfyUI's embedding key and width: CLIP, T5 or an LLM), where its pooled vector comes from, its latent, and
how its LoRA files name layers. Nothing here imports ComfyUI: the facts ComfyUI exposes at run time (model-config
and text-encoder class names, embedding keys, CLIPLoader types) are recorded as plain strings, and comfy_adapter
reads ComfyUI objects against them.

Two families may share a text encoder (Flux.2 Klein 4B and Z-Image both encode with Qwen3-4B) or a model-config
class (Flux.2 Dev and Klein are both ComfyUI's `Flux2`), so a loaded MODEL is told by its config class together
with its context width, and a loaded CLIP by ComfyUI's text-encoder class together with its encoders' widths.

A style-token head belongs to a text encoder, not to a family: a head for `clip_l` (768) serves every family whose
text encoders include clip_l. A new family is one more entry here plus its adapter code.
"""
from dataclasses import dataclass

UNET = "unet"                 # resolution levels with cross-attention to the text context (SD1.x, SDXL)
TRANSFORMER = "transformer"   # a stack of blocks over image and text tokens (Flux, Z-Image)
UNET_BLOCKS = ("BasicTransformerBlock", "ResBlock")
# Flux.1's and Flux.2's transformers: the blocks, and the attention and MLP linear layers a LoRA adapts in them
FLUX_BLOCKS = ("DoubleStreamBlock", "SingleStreamBlock")
FLUX_TARGETS = r"^(double_blocks\.\d+\.(img|txt)_(attn\.(qkv|proj)|mlp\.[02])|single_blocks\.\d+\.linear[12])$"


@dataclass(frozen=True)
class TextEncoder:
    key: str       # ComfyUI's embedding key, which `embedding:` files and style-token heads use: "clip_l", "qwen3_4b"
    width: int     # width of its input token embeddings: what a style-token head for it outputs
    kind: str      # "clip", "t5" or "llm": how its tokenizer marks a prompt (start/end tokens, chat template)
    name: str      # shown in messages: "CLIP-L", "Qwen3-4B"


@dataclass(frozen=True)
class LoraNaming:
    """How this family's LoRA files name the layers they adapt, as the tools its users have write them."""
    style: str                           # "kohya" (lora_unet_* / lora_te*_) or "comfy" (diffusion_model.<module path>)
    kohya_unet: str = ""                 # kohya's UNet block names: "diffusers" (SD1) or "ldm" (SDXL)
    text_encoder_prefixes: tuple = ()    # one kohya prefix per text encoder, in text_encoders' order
    modelspec_architecture: str = ""     # modelspec.architecture of this family's LoRAs
    kohya_base_version: str = ""         # ss_base_model_version of this family's LoRAs
    targets: str = ""                    # "comfy" style: regex of the adapted linear layers' module paths within
                                         # diffusion_model (the transformer blocks' attention and MLP layers)


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
    comfy_text_encoder_models: tuple      # ComfyUI text-encoder classes (or their bases) a CLIP of this family is
    comfy_clip_type: str                  # the type stock CLIPLoader / DualCLIPLoader loads its text-encoder files as
    comfy_min_version: tuple              # the oldest ComfyUI StyleSmith serves this family on: the release that
                                          # added it, or the pack's own minimum (0.3.64) for older families
    comfy_blocks: tuple = ()              # ComfyUI class names of the denoiser's blocks, the unit of gradient
                                          # checkpointing (residual and transformer blocks; a DiT's blocks)
    checkpoint_marker: str = ""           # a tensor-name prefix only this family's single-file checkpoints hold;
                                          # "" for families users have as split files (diffusion model, text
                                          # encoder, VAE)

    @property
    def text_encoders(self) -> dict[str, int]:
        """{embedding key: width}, in the order ComfyUI concatenates the encoders' outputs."""
        return {e.key: e.width for e in self.encoders}


FAMILIES = {
    "sd15": ModelFamily(
        key="sd15", display_name="SD1.x", denoiser=UNET, encoders=(TextEncoder("clip_l", 768, "clip", "CLIP-L"),),
        pooled_from="clip_l", context_width=768, latent_channels=4, latent_downscale=8,
        lora=LoraNaming("kohya", kohya_unet="diffusers", text_encoder_prefixes=("lora_te_",),
                        modelspec_architecture="stable-diffusion-v1/lora", kohya_base_version="sd_v1"),
        comfy_model_configs=("SD15",), comfy_text_encoder_models=("SD1ClipModel",),
        comfy_clip_type="stable_diffusion", comfy_min_version=(0, 3, 64), comfy_blocks=UNET_BLOCKS,
        checkpoint_marker="cond_stage_model.transformer."),
    # SDXL-family files (SDXL, SSD-1B, Segmind Vega, KOALA) hold clip_l at embedders.0, clip_g (open_clip form) at 1.
    "sdxl": ModelFamily(
        key="sdxl", display_name="SDXL", denoiser=UNET,
        encoders=(TextEncoder("clip_l", 768, "clip", "CLIP-L"), TextEncoder("clip_g", 1280, "clip", "CLIP-G")),
        pooled_from="clip_g", context_width=2048, latent_channels=4, latent_downscale=8,
        lora=LoraNaming("kohya", kohya_unet="ldm", text_encoder_prefixes=("lora_te1_", "lora_te2_"),
                        modelspec_architecture="stable-diffusion-xl-v1-base/lora", kohya_base_version="sdxl_base_v1-0"),
        comfy_model_configs=("SDXL",), comfy_text_encoder_models=("SDXLClipModel",),
        comfy_clip_type="sdxl", comfy_min_version=(0, 3, 64), comfy_blocks=UNET_BLOCKS,
        checkpoint_marker="conditioner.embedders.1.model."),
    # Klein reads Qwen3-4B's hidden states before layers 9, 18 and 27 and stacks them: context 3 x 2560. ComfyUI
    # detects Flux.2 Dev as the same `Flux2` config, with Mistral-3's 15360-wide context. Klein support came with
    # ComfyUI 0.9.2 (Comfy-Org/ComfyUI#11890); 0.3.75 loads a Qwen3-4B file as Z-Image's encoder whatever the type.
    "klein": ModelFamily(
        key="klein", display_name="Flux.2 Klein 4B", denoiser=TRANSFORMER,
        encoders=(TextEncoder("qwen3_4b", 2560, "llm", "Qwen3-4B"),), pooled_from=None, context_width=7680,
        latent_channels=128, latent_downscale=16,
        lora=LoraNaming("comfy", targets=FLUX_TARGETS),
        comfy_model_configs=("Flux2",), comfy_text_encoder_models=("Flux2TEModel",),
        comfy_clip_type="flux2", comfy_min_version=(0, 9, 2), comfy_blocks=FLUX_BLOCKS),
    # Z-Image is ComfyUI's Lumina 2 DiT at width 3840 (config `ZImage`, model `model_base.Lumina2`), reading Qwen3-4B's
    # second-to-last hidden state. Added in ComfyUI 0.3.75. Its workflows load the encoder as CLIPLoader type lumina2.
    "zimage": ModelFamily(
        key="zimage", display_name="Z-Image", denoiser=TRANSFORMER,
        encoders=(TextEncoder("qwen3_4b", 2560, "llm", "Qwen3-4B"),), pooled_from=None, context_width=2560,
        latent_channels=16, latent_downscale=8,
        lora=LoraNaming("comfy", targets=r"^(layers|noise_refiner|context_refiner)\.\d+\."
                                         r"(attention\.(qkv|out)|feed_forward\.w[123])$"),
        comfy_model_configs=("ZImage",), comfy_text_encoder_models=("ZImageTEModel",),
        comfy_clip_type="lumina2", comfy_min_version=(0, 3, 75), comfy_blocks=("JointTransformerBlock",)),
    # Flux.1 (dev, schnell and their fine-tunes) is ComfyUI's `Flux` config, which Flux.2's derives from: the context
    # width tells them apart. It attends to T5-XXL's last hidden state and takes CLIP-L's pooled vector; its workflows
    # load both files with DualCLIPLoader type flux. ComfyUI has served it since before 0.3.64.
    "flux1": ModelFamily(
        key="flux1", display_name="Flux.1", denoiser=TRANSFORMER,
        encoders=(TextEncoder("clip_l", 768, "clip", "CLIP-L"), TextEncoder("t5xxl", 4096, "t5", "T5-XXL")),
        pooled_from="clip_l", context_width=4096, latent_channels=16, latent_downscale=8,
        lora=LoraNaming("comfy", targets=FLUX_TARGETS),
        comfy_model_configs=("Flux",), comfy_text_encoder_models=("FluxClipModel",),
        comfy_clip_type="flux", comfy_min_version=(0, 3, 64), comfy_blocks=FLUX_BLOCKS),
}


def names(families, conjunction: str) -> str:
    """Display names as a sentence list: "SD1.x, SDXL and Z-Image" (conjunction "and") or "... or ..."."""
    shown = [f.display_name for f in families]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} {conjunction} {shown[-1]}"


SUPPORTED = names(FAMILIES.values(), "and")          # "SD1.x, SDXL, Flux.2 Klein 4B, Z-Image and Flux.1"
ANY_SUPPORTED = names(FAMILIES.values(), "or")       # "SD1.x, SDXL, Flux.2 Klein 4B, Z-Image or Flux.1"
SINGLE_FILE = [f for f in FAMILIES.values() if f.checkpoint_marker]   # families with single-file checkpoints
SPLIT_FILES = [f for f in FAMILIES.values() if not f.checkpoint_marker]


def version_text(version: tuple) -> str:
    return ".".join(str(part) for part in version)


def get_family(key: str) -> ModelFamily:
    if key not in FAMILIES:
        raise ValueError(f"Unknown model family {key!r}: StyleSmith serves {', '.join(FAMILIES)} ({SUPPORTED}).")
    return FAMILIES[key]


def display_name(key: str | None) -> str:
    """The family's name for messages; an unknown key is shown as it is."""
    return FAMILIES[key].display_name if key in FAMILIES else str(key)


def family_of_text_encoders(widths: dict[str, int]) -> ModelFamily | None:
    """The one family whose text encoders are exactly these ({"clip_l": 768} -> SD1.x); None when no family or
    several have them ({"qwen3_4b": 2560} is Klein's and Z-Image's: family_of_comfy_text_encoder tells those apart)."""
    found = families_with_text_encoders(widths)
    return found[0] if len(found) == 1 else None


def text_encoder(key: str) -> TextEncoder | None:
    """The registry's text encoder of this embedding key ("clip_l", "qwen3_4b"); None for a key no family has."""
    return next((e for f in FAMILIES.values() for e in f.encoders if e.key == key), None)


def text_encoder_kind(key: str) -> str | None:
    """"clip", "t5" or "llm" for a text encoder's embedding key; None for a key no family has."""
    encoder = text_encoder(key)
    return encoder.kind if encoder else None


def families_with_text_encoders(widths: dict[str, int]) -> list[ModelFamily]:
    """Every family whose text encoders are exactly these ({"qwen3_4b": 2560}: Flux.2 Klein 4B and Z-Image)."""
    return [f for f in FAMILIES.values() if f.text_encoders == widths]


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


def family_of_comfy_config(class_names: set[str], context_width: int) -> ModelFamily | None:
    """The family of a ComfyUI model config, given the names of its class and its bases and the width of the text
    context its denoiser reads (Flux.2 Klein 4B and Flux.2 Dev share the `Flux2` config)."""
    return next((f for f in FAMILIES.values()
                 if class_names & set(f.comfy_model_configs) and f.context_width == context_width), None)


def family_of_comfy_text_encoder(class_names: set[str], widths: dict[str, int]) -> ModelFamily | None:
    """The family of a ComfyUI CLIP, given the names of its text-encoder class and that class's bases and its
    encoders' widths (Klein's and Z-Image's CLIPs both hold Qwen3-4B; their classes differ)."""
    return next((f for f in FAMILIES.values()
                 if class_names & set(f.comfy_text_encoder_models) and f.text_encoders == widths), None)


def unsupported_on_host(family: ModelFamily, host_version: tuple) -> str | None:
    """Why a ComfyUI of `host_version` cannot load this family (naming both versions), or None when it can."""
    if tuple(host_version) >= family.comfy_min_version:
        return None
    return (f"{family.display_name} needs ComfyUI {version_text(family.comfy_min_version)} or newer; this host is "
            f"ComfyUI {version_text(host_version)}")
