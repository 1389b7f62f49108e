"""Tiny Flux.2 Klein 4B and Z-Image models as the split files users have, for ComfyUI's stock loaders.

    models/diffusion_models/stylesmith-tiny-{klein,zimage}.safetensors    UNETLoader
    models/text_encoders/stylesmith-tiny-qwen3-4b.safetensors             CLIPLoader type flux2 (Klein) / lumina2 (Z-Image)
    models/vae_approx/taef2_{encoder,decoder}.safetensors                 VAELoader "taef2" (Klein, 128 latent channels)
    models/vae_approx/taef1_{encoder,decoder}.safetensors                 VAELoader "taef1" (Z-Image, 16 latent channels)

ComfyUI's own classes build every part from the configs below, which are in the form ComfyUI's detection reads off a
file (comfy.model_detection.detect_unet_config), so the files are what its loaders detect as each family. What
detection pins stays real: Klein's 128 latent channels and 7680-wide context (Qwen3-4B taps 9, 18 and 27 stacked),
Z-Image's width 3840 (any other width is not detected as Z-Image; its 2 + 2 refiner layers are fixed, so it is 0.9B
parameters however few main layers it has: keep its tests few). n_layers 1, not 0: with no main layer the text
would never mix into the image.

One Qwen3-4B text encoder serves both families: hidden 2560 (what ComfyUI recognises as Qwen3-4B; its 151,936 x 2560
vocabulary alone is 389M parameters), one head, a 64-wide MLP and 28 layers, so Klein's taps read the hidden states
they read in the real 36-layer model (with 27 layers the third would be the final-normed output). ComfyUI cannot
tell that shape from the tensors: the file records the options it needs under `stylesmith.comfy_model_options`
(core/formats/text_encoder_options.py), which the harness pack passes to stock CLIPLoader graphs.

A family is built only on a host that supports it (core/families.py `comfy_min_version`). Weights come from one
seeded generator (devkit.tiny_models.init_weights_); diffusion models and text encoder are stored in bf16, as the
released files are; ComfyUI holds the text encoder in its file's dtype (bf16) and casts to its compute dtype per
layer.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from comfy_adapter.host import import_comfy
from core.families import FAMILIES, unsupported_on_host
from core.formats.safe_files import write_safetensors_atomic
from core.formats.text_encoder_options import model_options_metadata

BUILDER_VERSION = 1
STORAGE_DTYPE = torch.bfloat16

QWEN3_4B_FILE = "stylesmith-tiny-qwen3-4b.safetensors"
QWEN3_4B_OPTIONS = {"qwen3_4b_model_config": {"num_hidden_layers": 28, "intermediate_size": 64,
                                              "num_attention_heads": 1, "num_key_value_heads": 1}}


@dataclass(frozen=True)
class TinySplitModel:
    """A family's tiny files and the stock nodes of its text-to-image graph."""
    family: str
    diffusion_model: str      # file in models/diffusion_models (UNETLoader)
    text_encoder: str         # file in models/text_encoders (CLIPLoader with the family's comfy_clip_type)
    vae: str                  # VAELoader name: an approximate VAE pair <vae>_{encoder,decoder} in models/vae_approx
    empty_latent: str         # the stock node that makes the family's empty latent


SPLIT_MODELS = {
    "klein": TinySplitModel("klein", "stylesmith-tiny-klein.safetensors", QWEN3_4B_FILE, "taef2", "EmptyFlux2LatentImage"),
    "zimage": TinySplitModel("zimage", "stylesmith-tiny-zimage.safetensors", QWEN3_4B_FILE, "taef1", "EmptySD3LatentImage"),
}

# Diffusion-model configs as comfy.model_detection.detect_unet_config reads them off a file.
DIT_CONFIGS = {
    "klein": dict(image_model="flux2", in_channels=FAMILIES["klein"].latent_channels, out_channels=128, patch_size=1,
                  hidden_size=128, num_heads=1, depth=1, depth_single_blocks=1,
                  context_in_dim=FAMILIES["klein"].context_width, vec_in_dim=None, guidance_embed=False,
                  axes_dim=[32, 32, 32, 32], mlp_ratio=3.0, theta=2000, qkv_bias=False, ops_bias=False,
                  global_modulation=True, mlp_silu_act=True, txt_ids_dims=[3], default_ref_method="index",
                  ref_index_scale=10.0),
    "zimage": dict(image_model="lumina2", in_channels=FAMILIES["zimage"].latent_channels, patch_size=2, dim=3840,
                   cap_feat_dim=FAMILIES["zimage"].context_width, n_layers=1, qk_norm=True, n_heads=30, n_kv_heads=30,
                   axes_dims=[32, 48, 48], axes_lens=[1536, 512, 512], rope_theta=256.0, ffn_dim_multiplier=8.0 / 3.0,
                   z_image_modulation=True, time_scale=1000.0, pad_tokens_multiple=32),
}
VAE_LATENT_CHANNELS = {"taef2": 128, "taef1": 16}


def build_diffusion_model(path: Path, family: str, seed: int) -> dict:
    """Write a family's tiny diffusion model (keys without prefix, as released files); return its metadata."""
    import_comfy()
    import comfy.model_detection
    from .tiny_models import init_weights_
    model_config = comfy.model_detection.model_config_from_unet_config(dict(DIT_CONFIGS[family]))
    expected = FAMILIES[family].comfy_model_configs
    if model_config is None or type(model_config).__name__ not in expected:
        raise RuntimeError(f"ComfyUI detects the tiny {family} config as {type(model_config).__name__}, not {expected}")
    model_config.set_inference_dtype(STORAGE_DTYPE, None)
    model = model_config.get_model({}, device="cpu")
    init_weights_(model.diffusion_model, torch.Generator().manual_seed(seed))
    metadata = {"stylesmith.tiny_model": json.dumps({
        "builder": f"devkit.tiny_dit_models v{BUILDER_VERSION}", "family": family, "seed": seed,
        "comfy_detected_as": type(model_config).__name__}, sort_keys=True)}
    write_safetensors_atomic(model.diffusion_model.state_dict(), path, metadata)
    return metadata


def build_qwen3_4b(path: Path, seed: int) -> None:
    """Write the tiny Qwen3-4B text encoder (Hugging Face key names, `model.*`, as released files), with the
    ComfyUI options that build its shape as its only metadata (one key keeps the bytes deterministic)."""
    import_comfy()
    import comfy.ops
    import comfy.text_encoders.llama
    from .tiny_models import init_weights_
    encoder = comfy.text_encoders.llama.Qwen3_4B(QWEN3_4B_OPTIONS["qwen3_4b_model_config"], STORAGE_DTYPE, "cpu",
                                                  comfy.ops.disable_weight_init)
    init_weights_(encoder, torch.Generator().manual_seed(seed))
    write_safetensors_atomic(encoder.state_dict(), path, model_options_metadata(QWEN3_4B_OPTIONS))


def build_vae_approx(folder: Path, name: str, seed: int) -> list[Path]:
    """Write ComfyUI's TAESD layout for an approximate VAE as the pair stock VAELoader lists under `name`."""
    import_comfy()
    import comfy.taesd.taesd
    from .tiny_models import init_weights_
    vae = comfy.taesd.taesd.TAESD(latent_channels=VAE_LATENT_CHANNELS[name])
    init_weights_(vae, torch.Generator().manual_seed(seed))
    paths = []
    for part, module in (("encoder", vae.taesd_encoder), ("decoder", vae.taesd_decoder)):
        paths.append(folder / f"{name}_{part}.safetensors")
        write_safetensors_atomic(module.state_dict(), paths[-1], {})
    return paths


def ensure_split_models(models_dir: Path, host_version: tuple, seed: int) -> list[Path]:
    """Build the tiny split files of every family this host supports unless identical builds are there; say which
    families were left out and why."""
    from .tiny_models import ensure_built
    built, vaes, text_encoders = [], set(), set()
    for family, spec in SPLIT_MODELS.items():
        reason = unsupported_on_host(FAMILIES[family], host_version)
        if reason is not None:
            print(f"[tiny_models] no tiny {family} files: {reason}", flush=True)
            continue
        recipe = {"builder": BUILDER_VERSION, "family": family, "seed": seed, "config": DIT_CONFIGS[family]}
        built.append(ensure_built(models_dir / "diffusion_models" / spec.diffusion_model, json.loads(json.dumps(recipe)),
                                  lambda p, f=family: build_diffusion_model(p, f, seed)))
        vaes.add(spec.vae)
        text_encoders.add(spec.text_encoder)
    if QWEN3_4B_FILE in text_encoders:
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "options": QWEN3_4B_OPTIONS}
        built.append(ensure_built(models_dir / "text_encoders" / QWEN3_4B_FILE, recipe,
                                  lambda p: build_qwen3_4b(p, seed)))
    folder = models_dir / "vae_approx"
    for name in sorted(vaes):
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "latent_channels": VAE_LATENT_CHANNELS[name]}
        decoder, encoder = folder / f"{name}_decoder.safetensors", folder / f"{name}_encoder.safetensors"
        if not encoder.is_file():       # the decoder's stamp stands for the pair
            decoder.unlink(missing_ok=True)
        built.append(ensure_built(decoder, recipe, lambda p, n=name: build_vae_approx(folder, n, seed)))
        built.append(encoder)
    return built + ensure_dit_loras(models_dir, built, seed)


def ensure_dit_loras(models_dir: Path, built: list[Path], seed: int) -> list[Path]:
    """The demo workflows' StyleForge LoRAs of the DiT families whose split files were built, made by the trainer."""
    from .tiny_loras import DIT_LORAS, build_styleforge_lora
    from .tiny_models import ensure_built
    loras = []
    for file_name, (family, components) in DIT_LORAS.items():
        spec = SPLIT_MODELS[family]
        files = [models_dir / "diffusion_models" / spec.diffusion_model, models_dir / "text_encoders" / spec.text_encoder]
        if files[0] not in built:
            continue
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "components": components,
                  "sha256": [json.loads(f.with_name(f.name + ".stamp.json").read_text())["sha256"] for f in files]}
        base = ["--diffusion-model", str(files[0]), "--text-encoder", str(files[1]),
                "--vae", str(models_dir / "vae_approx" / spec.vae)]
        loras.append(ensure_built(models_dir / "loras" / file_name, json.loads(json.dumps(recipe)),
                                  lambda p, b=base, c=components: build_styleforge_lora(p, b, c, seed)))
    return loras


def stock_text_to_image(family: str, text: str, seed: int, size: int = 64, steps: int = 2,
                        weight_dtype: str = "default") -> dict:
    """The API prompt of a family's stock text-to-image graph on its tiny files (as ComfyUI's own Klein and Z-Image
    templates build it: the negative is the zeroed positive, cfg 1)."""
    spec = SPLIT_MODELS[family]
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": spec.diffusion_model, "weight_dtype": weight_dtype}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": spec.text_encoder,
                                                     "type": FAMILIES[family].comfy_clip_type}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": spec.vae}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["2", 0]}},
        "5": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["4", 0]}},
        "6": {"class_type": spec.empty_latent, "inputs": {"width": size, "height": size, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0],
                                                   "latent_image": ["6", 0], "seed": seed, "steps": steps, "cfg": 1.0,
                                                   "sampler_name": "euler", "scheduler": "simple", "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": f"stylesmith-tiny-{family}"}},
    }
