"""Build randomly initialised checkpoints in the real SD1.5 / SDXL single-file formats.

ComfyUI's own classes build every part (UNet, both CLIP text encoders, TAESD or KL VAE) and
ComfyUI's own `state_dict_for_saving` writes the keys, so the files are exactly what
`CheckpointLoaderSimple` detects and loads. Weights come from one seeded generator: the same
seed gives the same bytes.

`tiny` UNets keep only the values ComfyUI's detection pins (DESIGN §4); `two-level` (SD1.5 only) is
a tiny UNet with two resolution levels and a middle block, for tests of per-level behaviour; `full`
builds the real SD1.5 / SDXL architecture for benchmarks (random weights time and fill memory like
real ones). All but `full` get a TAESD VAE.

The DiT families' split files (Flux.2 Klein 4B, Z-Image) are built by devkit/tiny_dit_models.py, from
--models-dir runs, on hosts that support them.

    python -m devkit.tiny_models --models-dir .stylesmith/base/models          # the defaults
    python -m devkit.tiny_models --family sdxl --size full --out /tmp/sdxl.safetensors
"""
import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from comfy_adapter import versions
from comfy_adapter.host import import_comfy, locate_comfyui
from core.formats.atomic_files import write_text_atomic
from core.formats.safe_files import file_sha256, write_safetensors_atomic

BUILDER_VERSION = 3
DEFAULT_SEED = 20261125

_COMMON = dict(use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False,
               in_channels=4, out_channels=4, model_channels=320,
               use_temporal_resblock=False, use_temporal_attention=False)

# UNet configs in the form comfy.model_detection.detect_unet_config returns them.
# transformer_depth_middle = -2 means "no middle block".
UNET_CONFIGS = {
    # One level and a middle block with attention: OSASIS mixing (core/osasis/mixing.py) gives the middle block its
    # own style share, so every mix in (0.5, 1] decodes differently, as on a real SD1.5.
    ("sd15", "tiny"): dict(_COMMON, adm_in_channels=None, context_dim=768, use_linear_in_transformer=False,
                           num_res_blocks=[1], channel_mult=[1], transformer_depth=[1],
                           transformer_depth_output=[0, 0], transformer_depth_middle=1),
    # Smallest SD1.5 UNet with 2 levels and a middle block, attention everywhere (per-level tests, e.g. OSASIS mixing).
    ("sd15", "two-level"): dict(_COMMON, adm_in_channels=None, context_dim=768, use_linear_in_transformer=False,
                                num_res_blocks=[1, 1], channel_mult=[1, 1], transformer_depth=[1, 1],
                                transformer_depth_output=[1, 1, 1, 1], transformer_depth_middle=1),
    ("sd15", "full"): dict(_COMMON, adm_in_channels=None, context_dim=768, use_linear_in_transformer=False,
                           num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
                           transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                           transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
                           transformer_depth_middle=1),
    # Smallest UNet ComfyUI still detects as an SDXL-family model (Segmind_Vega's pins).
    ("sdxl", "tiny"): dict(_COMMON, adm_in_channels=2816, num_classes="sequential", context_dim=2048,
                           use_linear_in_transformer=True, num_res_blocks=[2, 2, 2], channel_mult=[1, 1, 1],
                           transformer_depth=[0, 0, 1, 1, 2, 2], transformer_depth_output=[0] * 9,
                           transformer_depth_middle=-2),
    ("sdxl", "full"): dict(_COMMON, adm_in_channels=2816, num_classes="sequential", context_dim=2048,
                           use_linear_in_transformer=True, num_res_blocks=[2, 2, 2], channel_mult=[1, 2, 4],
                           transformer_depth=[0, 0, 2, 2, 10, 10],
                           transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10],
                           transformer_depth_middle=10),
}

KL_VAE_CONFIG = {'double_z': True, 'z_channels': 4, 'resolution': 256, 'in_channels': 3, 'out_ch': 3, 'ch': 128,
                 'ch_mult': [1, 2, 4, 4], 'num_res_blocks': 2, 'attn_resolutions': [], 'dropout': 0.0}

TEXT_ENCODER_DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "fp8": torch.float8_e4m3fn}


@dataclass(frozen=True)
class DefaultModel:
    file_name: str
    family: str
    size: str = "tiny"


DEFAULT_MODELS = (
    DefaultModel("stylesmith-tiny-sd15.safetensors", "sd15"),
    DefaultModel("stylesmith-tiny-sdxl.safetensors", "sdxl"),
)
TINY_CHECKPOINTS = {m.family: m.file_name for m in DEFAULT_MODELS}


def init_weights_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Deterministic init: biases 0, norm scales 1, embeddings N(0, 0.02), other weights N(0, 1/fan_in).

    ComfyUI builds layers uninitialised (comfy.ops.disable_weight_init); random but well-scaled
    weights keep activations O(1), so numeric tests compare non-trivial values.
    """
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 0:
                continue
            if p.ndim == 1:
                p.fill_(0.0 if name.endswith("bias") else 1.0)
            elif "embedding" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
            else:
                fan_in = math.prod(p.shape[1:])
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(fan_in))


def build_state_dict(family: str, size: str, seed: int, text_encoder_dtype: torch.dtype) -> tuple[dict, object]:
    """Return (checkpoint state dict, ComfyUI model config) for a random SD1.5 or SDXL model."""
    import_comfy()
    import comfy.model_detection
    import comfy.ldm.models.autoencoder
    import comfy.taesd.taesd

    unet_config = UNET_CONFIGS[(family, size)]
    model_config = comfy.model_detection.model_config_from_unet_config(dict(unet_config))
    if model_config is None:
        raise RuntimeError(f"ComfyUI detects no model for the {size} {family} UNet config")
    generator = torch.Generator().manual_seed(seed)

    model = model_config.get_model({}, device="cpu")
    init_weights_(model.diffusion_model, generator)

    text_encoder = model_config.clip_target().clip(device="cpu", dtype=torch.float32)
    init_weights_(text_encoder, generator)
    clip_sd = {k: v.to(text_encoder_dtype) if v.is_floating_point() else v
               for k, v in text_encoder.state_dict().items()}

    if size == "full":
        vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=dict(KL_VAE_CONFIG), embed_dim=4)
    else:
        vae = comfy.taesd.taesd.TAESD()
    init_weights_(vae, generator)

    sd = versions.checkpoint_state_dict(model, clip_sd, vae.state_dict())
    half = {k: (v.to(torch.float16) if v.dtype == torch.float32 else v).contiguous() for k, v in sd.items()}
    return half, model_config


def build_checkpoint(path: Path, family: str, size: str = "tiny", seed: int = DEFAULT_SEED,
                     text_encoder_dtype: str = "fp16") -> dict:
    """Write a checkpoint atomically; return its metadata."""
    sd, model_config = build_state_dict(family, size, seed, TEXT_ENCODER_DTYPES[text_encoder_dtype])
    # One metadata key: safetensors writes several keys in hash order, which would break
    # "same seed, same bytes".
    metadata = {"stylesmith.tiny_model": json.dumps({
        "builder": f"devkit.tiny_models v{BUILDER_VERSION}", "family": family, "size": size, "seed": seed,
        "text_encoder_dtype": text_encoder_dtype, "comfy_detected_as": type(model_config).__name__},
        sort_keys=True)}
    write_safetensors_atomic(sd, path, metadata)
    return metadata


def ensure_built(path: Path, recipe: dict, build) -> Path:
    """Run build(path) unless a JSON stamp beside `path` says the same recipe already made it."""
    stamp_path = path.with_name(path.name + ".stamp.json")
    if path.is_file() and stamp_path.is_file():
        stamp = json.loads(stamp_path.read_text())
        if {k: stamp.get(k) for k in recipe} == recipe:
            return path
    started = time.perf_counter()
    build(path)
    # A new file replaces the stamp rather than rewriting it: the host lane's bases hard-link the pinned one's.
    write_text_atomic(stamp_path, "tiny model stamp", json.dumps(dict(recipe, sha256=file_sha256(path)), indent=1))
    print(f"[tiny_models] built {path} ({path.stat().st_size / 2**20:.1f} MiB) "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return path


def ensure_default_models(models_dir: Path, seed: int = DEFAULT_SEED, text_encoder_dtype: str = "fp8") -> list[Path]:
    """Build the default tiny checkpoints, style encoders, StyleForge LoRAs and OSASIS style into models_dir unless
    identical builds are there.

    The checkpoints' text encoders are stored in float8 to keep the files small (ComfyUI casts them on load).
    """
    from .tiny_loras import DEFAULT_LORAS, build_styleforge_lora
    from .tiny_osasis_styles import DEFAULT_OSASIS_STYLES, TRAINING, build_osasis_style
    from .tiny_style_encoders import BUILT_FOR, DEFAULT_STYLE_ENCODERS, build_style_encoder_file
    built = []
    for spec in DEFAULT_MODELS:
        # The UNet config is part of the recipe, so changing it rebuilds the file (and what is made from it).
        recipe = {"builder": BUILDER_VERSION, "family": spec.family, "size": spec.size, "seed": seed,
                  "text_encoder_dtype": text_encoder_dtype, "unet": UNET_CONFIGS[(spec.family, spec.size)]}
        built.append(ensure_built(models_dir / "checkpoints" / spec.file_name, recipe,
                                  lambda p, s=spec: build_checkpoint(p, s.family, s.size, seed, text_encoder_dtype)))
    for family in BUILT_FOR:
        file_name = DEFAULT_STYLE_ENCODERS[family]
        recipe = {"builder": BUILDER_VERSION, "family": family, "seed": seed}
        built.append(ensure_built(models_dir / "style_encoders" / file_name, recipe,
                                  lambda p, f=family: build_style_encoder_file(p, f, seed)))
    sd15 = models_dir / "checkpoints" / TINY_CHECKPOINTS["sd15"]
    for file_name, components in DEFAULT_LORAS.items():
        recipe = {"builder": BUILDER_VERSION, "seed": seed, "components": components,
                  "checkpoint_sha256": json.loads(sd15.with_name(sd15.name + ".stamp.json").read_text())["sha256"]}
        built.append(ensure_built(models_dir / "loras" / file_name, json.loads(json.dumps(recipe)),
                                  lambda p, c=components: build_styleforge_lora(p, ["--checkpoint", str(sd15)], c, seed)))
    encoder = models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS["sd15"]
    recipe = {"builder": BUILDER_VERSION, "seed": seed, "training": TRAINING,
              "checkpoint_sha256": json.loads(sd15.with_name(sd15.name + ".stamp.json").read_text())["sha256"],
              "style_encoder_sha256": json.loads(encoder.with_name(encoder.name + ".stamp.json").read_text())["sha256"]}
    built.append(ensure_built(models_dir / "osasis" / DEFAULT_OSASIS_STYLES["sd15"], recipe,
                              lambda p: build_osasis_style(p, ["--checkpoint", str(sd15)], encoder, seed)))
    return built


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--comfyui", type=Path, help="ComfyUI folder (default: $COMFYUI_PATH or the one setup recorded)")
    p.add_argument("--models-dir", type=Path, help="build the default tiny models into MODELS_DIR (checkpoints/, "
                   "and the split files of the DiT families the host supports: devkit/tiny_dit_models.py)")
    p.add_argument("--inputs-dir", type=Path, help="also write the example input images into this ComfyUI input/")
    p.add_argument("--family", choices=["sd15", "sdxl"], help="build one checkpoint of this family (with --out)")
    p.add_argument("--size", choices=["tiny", "two-level", "full"], default="tiny",
                   help="tiny (tests), two-level (SD1.5 only: 2 levels and a middle block) or full architecture")
    p.add_argument("--out", type=Path, help="where to write the single checkpoint")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="weights seed: same seed, same bytes")
    p.add_argument("--text-encoder-dtype", choices=sorted(TEXT_ENCODER_DTYPES), default="fp8",
                   help="storage dtype of the text encoders (fp8 halves the file; ComfyUI casts on load)")
    args = p.parse_args(argv)
    if (args.family is None) != (args.out is None):
        p.error("--family and --out go together")
    if args.family is not None and (args.family, args.size) not in UNET_CONFIGS:
        p.error(f"there is no {args.size} {args.family} model")
    if args.models_dir is None and args.out is None:
        p.error("give --models-dir (the defaults) or --family with --out (one checkpoint)")
    return args


def main(args) -> None:
    if args.comfyui is not None:
        os.environ["COMFYUI_PATH"] = str(args.comfyui)
    if args.models_dir is not None:
        ensure_default_models(args.models_dir, args.seed, args.text_encoder_dtype)
        from .tiny_dit_models import ensure_split_models
        from .tiny_osasis_styles import ensure_dit_osasis_styles
        host_version = versions.host_version(locate_comfyui())
        ensure_split_models(args.models_dir, host_version, args.seed)
        ensure_dit_osasis_styles(args.models_dir, host_version, args.seed)
    if args.inputs_dir is not None:
        from .example_inputs import write_example_inputs
        write_example_inputs(args.inputs_dir)
    if args.out is not None:
        meta = build_checkpoint(args.out, args.family, args.size, args.seed, args.text_encoder_dtype)
        print(f"[tiny_models] wrote {args.out}: {meta}", file=sys.stderr)


if __name__ == "__main__":
    main(parse_args())
