"""Tiny Flux.2 Klein 4B, Z-Image and Flux.1 models as the split files users have, for ComfyUI's stock loaders.

    models/diffusion_models/stylesmith-tiny-{klein,zimage,flux1}.safetensors   UNETLoader
    models/text_encoders/stylesmith-tiny-qwen3-4b.safetensors             CLIPLoader type flux2 (Klein) / lumina2 (Z-Image)
    models/text_encoders/stylesmith-tiny-{clip-l,t5xxl}.safetensors       DualCLIPLoader type flux (Flux.1)
    models/vae_approx/taef2_{encoder,decoder}.safetensors                 VAELoader "taef2" (Klein, 128 latent channels)
    models/vae_approx/taef1_{encoder,decoder}.safetensors                 VAELoader "taef1" (Z-Image, Flux.1: 16)

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

Flux.1's T5-XXL keeps its real width (4096: the context's and its style-token head's) and vocabulary, with 2 thin
layers, and records its shape the same way (`t5xxl_model_config`). Its CLIP-L is full size (123M parameters): ComfyUI
replaces any `clip_l_model_config` it is given with one of its own, read off the file's position embeddings
(comfy/text_encoders/long_clipl.py), so a shrunk CLIP-L cannot load. Flux.1's tiny
diffusion model is hidden 128 with 1 head, which only a ComfyUI that reads the head count off the file detects
(0.3.75 and older build every Flux.1 at width 3072 with 24 heads): `TinySplitModel.comfy_min_version`.

A family is built only on a host that supports it and detects its tiny files (`unsupported_here`). Weights come from one
seeded generator (devkit.tiny_models.init_weights_); diffusion models and text encoder are stored in bf16, as the
released files are; ComfyUI holds the text encoder in its file's dtype (bf16) and casts to its compute dtype per
layer.
"""
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from comfy_adapter.host import import_comfy
from core.families import FAMILIES, get_family, unsupported_on_host, version_text
from core.formats.safe_files import write_safetensors_atomic
from core.formats.text_encoder_options import model_options_metadata

BUILDER_VERSION = 1
STORAGE_DTYPE = torch.bfloat16

QWEN3_4B_FILE = "stylesmith-tiny-qwen3-4b.safetensors"
QWEN3_4B_OPTIONS = {"qwen3_4b_model_config": {"num_hidden_layers": 28, "intermediate_size": 64,
                                              "num_attention_heads": 1, "num_key_value_heads": 1}}
# Flux.1's text encoders: file -> (embedding key, the ComfyUI options that shrink it; none for CLIP-L).
FLUX1_TEXT_ENCODERS = {
    "stylesmith-random-clip-l.safetensors": ("clip_l", {}),
    "stylesmith-tiny-t5xxl.safetensors": ("t5xxl", {"t5xxl_model_config": {
        "num_layers": 2, "d_ff": 64, "num_heads": 1, "d_kv": 64}}),
}


@dataclass(frozen=True)
class TinySplitModel:
    """A family's tiny files and the stock nodes of its text-to-image graph."""
    family: str
    diffusion_model: str      # file in models/diffusion_models (UNETLoader)
    text_encoders: tuple      # files in models/text_encoders: one (CLIPLoader) or two (DualCLIPLoader), loaded with
                              # the family's comfy_clip_type
    vae: str                  # VAELoader name: an approximate VAE pair <vae>_{encoder,decoder} in models/vae_approx
    empty_latent: str         # the stock node that makes the family's empty latent
    comfy_min_version: tuple = (0, 0, 0)   # the oldest ComfyUI that detects these tiny files as the family
    comfy_reads: str = ""                  # what that ComfyUI reads off the files that older ones do not

    @property
    def text_encoder(self) -> str:
        """The text-encoder file of a family that has one."""
        (name,) = self.text_encoders
        return name

    def clip_loader(self) -> dict:
        """The stock node that loads the family's text encoders: CLIPLoader for one file, DualCLIPLoader for two."""
        clip_type = FAMILIES[self.family].comfy_clip_type
        if len(self.text_encoders) == 1:
            return {"class_type": "CLIPLoader", "inputs": {"clip_name": self.text_encoder, "type": clip_type}}
        first, second = self.text_encoders
        return {"class_type": "DualCLIPLoader",
                "inputs": {"clip_name1": first, "clip_name2": second, "type": clip_type}}


SPLIT_MODELS = {
    "klein": TinySplitModel("klein", "stylesmith-tiny-klein.safetensors", (QWEN3_4B_FILE,), "taef2",
                            "EmptyFlux2LatentImage"),
    "zimage": TinySplitModel("zimage", "stylesmith-tiny-zimage.safetensors", (QWEN3_4B_FILE,), "taef1",
                             "EmptySD3LatentImage"),
    "flux1": TinySplitModel("flux1", "stylesmith-tiny-flux1.safetensors", tuple(FLUX1_TEXT_ENCODERS), "taef1",
                            "EmptySD3LatentImage", comfy_min_version=(0, 9, 2),
                            comfy_reads="Flux detection reads the head count off the file"),
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
    "flux1": dict(image_model="flux", in_channels=FAMILIES["flux1"].latent_channels, out_channels=16, patch_size=2,
                  hidden_size=128, num_heads=1, depth=1, depth_single_blocks=1,
                  context_in_dim=FAMILIES["flux1"].context_width, vec_in_dim=768, guidance_embed=True,
                  axes_dim=[16, 56, 56], mlp_ratio=4.0, theta=10000, qkv_bias=True, txt_ids_dims=[], yak_mlp=False,
                  txt_norm=False),
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


def build_flux1_text_encoder(path: Path, file_name: str, seed: int) -> None:
    """Write Flux.1's CLIP-L or tiny T5-XXL (the key names of the released clip_l / t5xxl files), built by ComfyUI's
    own encoder classes with the options that shrink it, which the file records as its only metadata."""
    import_comfy()
    import comfy.sd1_clip
    import comfy.text_encoders.sd3_clip
    from .tiny_models import init_weights_
    key, options = FLUX1_TEXT_ENCODERS[file_name]
    encoder_class = {"clip_l": comfy.sd1_clip.SDClipModel, "t5xxl": comfy.text_encoders.sd3_clip.T5XXLModel}[key]
    encoder = encoder_class(device="cpu", dtype=STORAGE_DTYPE, model_options=options).transformer
    init_weights_(encoder, torch.Generator().manual_seed(seed))
    write_safetensors_atomic(encoder.state_dict(), path, model_options_metadata(options) if options else {})


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


def unsupported_here(family: str, host_version: tuple) -> str | None:
    """Why a ComfyUI of `host_version` cannot run a family's tiny files (naming both versions), or None when it can:
    the family is newer than the host, or the host does not detect the tiny files as the family."""
    reason = unsupported_on_host(get_family(family), host_version)
    spec = SPLIT_MODELS.get(family)
    if reason is None and spec is not None and tuple(host_version) < spec.comfy_min_version:
        reason = (f"the tiny {FAMILIES[family].display_name} files need ComfyUI {version_text(spec.comfy_min_version)} "
                  f"or newer ({spec.comfy_reads}); this host is ComfyUI {version_text(host_version)}")
    return reason


def ensure_split_models(models_dir: Path, host_version: tuple, seed: int) -> list[Path]:
    """Build the tiny split files of every family this host supports unless identical builds are there; say which
    families were left out and why."""
    from .tiny_models import ensure_built
    built, vaes, text_encoders = [], set(), set()
    for family, spec in SPLIT_MODELS.items():
        reason = unsupported_here(family, host_version)
        if reason is not None:
            print(f"[tiny_models] no tiny {family} files: {reason}", flush=True)
            continue
        recipe = {"builder": BUILDER_VERSION, "family": family, "seed": seed, "config": DIT_CONFIGS[family]}
        built.append(ensure_built(models_dir / "diffusion_models" / spec.diffusion_model, json.loads(json.dumps(recipe)),
                                  lambda p, f=family: build_diffusion_model(p, f, seed)))
        vaes.add(spec.vae)
        text_encoders.update(spec.text_encoders)
    if QWEN3_4B_FILE in text_encoders:
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "options": QWEN3_4B_OPTIONS}
        built.append(ensure_built(models_dir / "text_encoders" / QWEN3_4B_FILE, recipe,
                                  lambda p: build_qwen3_4b(p, seed)))
    for name in sorted(text_encoders & set(FLUX1_TEXT_ENCODERS)):
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "options": FLUX1_TEXT_ENCODERS[name][1]}
        built.append(ensure_built(models_dir / "text_encoders" / name, recipe,
                                  lambda p, n=name: build_flux1_text_encoder(p, n, seed)))
    for name in sorted(vaes):
        built += ensure_vae_approx(models_dir / "vae_approx", name, seed)
    return built + ensure_dit_loras(models_dir, built, seed)


def ensure_vae_approx(folder: Path, name: str, seed: int) -> list[Path]:
    """The approximate VAE pair `name` in `folder` (VAELoader lists it as `name`), built unless already there."""
    from .tiny_models import ensure_built
    recipe = {"builder": BUILDER_VERSION, "seed": seed, "latent_channels": VAE_LATENT_CHANNELS[name]}
    decoder, encoder = folder / f"{name}_decoder.safetensors", folder / f"{name}_encoder.safetensors"
    if not encoder.is_file():       # the decoder's stamp stands for the pair
        decoder.unlink(missing_ok=True)
    return [ensure_built(decoder, recipe, lambda p: build_vae_approx(folder, name, seed)), encoder]


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
                  "model_sha256": [json.loads(f.with_name(f.name + ".stamp.json").read_text())["sha256"]
                                   for f in files]}
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
        "2": spec.clip_loader(),
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
