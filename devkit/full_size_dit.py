"""Full-size random-weight Flux.2 Klein 4B and Z-Image split files for `benchmarks.gpu_check`.

    python -m devkit.full_size_dit --family klein --out-dir WORK/split      # what gpu_check runs, once per recipe

How they are built: the configs below are the tiny ones of devkit.tiny_dit_models with the sizes of the released
models put back, in the form ComfyUI's detection reads off a file (comfy/model_detection.py; the real Klein 4B
file has img_in 3072 wide, so 3072 / sum(axes_dim) = 24 heads, 5 double and 20 single blocks; Z-Image has 30 main
layers at width 3840). ComfyUI's own classes build each model on the meta device (no memory), so the parameter count
is read without weights (`parameter_count`, which the CPU tests check); only `build` materialises the model in bf16
on the CPU, fills it with devkit.tiny_models.init_weights_ and writes it (Klein 7.2 GiB, Z-Image 11.5 GiB).
The text encoder is Qwen3-4B at ComfyUI's own full config (36 layers, 4.0B parameters, 7.5 GiB), shared by both
families. The VAE is the tiny models' approximate VAE (taef2 / taef1, built beside them): the goals measure the
transformer's training, and the VAE only encodes the few training images before it.
"""
import argparse
import json
from pathlib import Path

import torch

from comfy_adapter.host import import_comfy
from .tiny_dit_models import DIT_CONFIGS, SPLIT_MODELS, STORAGE_DTYPE, ensure_vae_approx

RECIPE_VERSION = 1
FULL_CONFIGS = {
    "klein": dict(DIT_CONFIGS["klein"], hidden_size=3072, num_heads=24, depth=5, depth_single_blocks=20),
    "zimage": dict(DIT_CONFIGS["zimage"], n_layers=30),
}
QWEN3_4B_FILE = "random-qwen3-4b.safetensors"


def diffusion_model(family: str, device: str = "meta") -> torch.nn.Module:
    """The family's full-size transformer as ComfyUI builds it, in bf16, on `device` (meta: shapes only)."""
    import_comfy()
    import comfy.model_detection
    model_config = comfy.model_detection.model_config_from_unet_config(dict(FULL_CONFIGS[family]))
    model_config.set_inference_dtype(STORAGE_DTYPE, None)
    return model_config.get_model({}, device=device).diffusion_model


def text_encoder(device: str = "meta") -> torch.nn.Module:
    """Qwen3-4B at ComfyUI's own config (no model options), in bf16, on `device`."""
    import_comfy()
    import comfy.ops
    import comfy.text_encoders.llama
    return comfy.text_encoders.llama.Qwen3_4B({}, STORAGE_DTYPE, device, comfy.ops.disable_weight_init)


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def write_random(module: torch.nn.Module, path: Path, seed: int) -> None:
    from core.formats.safe_files import write_safetensors_atomic
    from .tiny_models import init_weights_
    init_weights_(module, torch.Generator().manual_seed(seed))
    write_safetensors_atomic(module.state_dict(), path, {})


def files(out_dir: Path, family: str) -> tuple[Path, Path, Path]:
    """Where the family's diffusion model, text encoder and VAE (the approximate VAE pair's prefix) are."""
    vae = out_dir / "vae_approx" / SPLIT_MODELS[family].vae
    return out_dir / f"random-{family}.safetensors", out_dir / QWEN3_4B_FILE, vae


def build(out_dir: Path, family: str, seed: int) -> tuple[Path, Path, Path]:
    """Write the family's files unless a stamp says the same recipe made them; return their paths."""
    from .tiny_models import ensure_built
    model_file, encoder_file, vae = files(out_dir, family)
    out_dir.mkdir(parents=True, exist_ok=True)
    recipe = {"builder": RECIPE_VERSION, "seed": seed}
    ensure_built(model_file, json.loads(json.dumps(dict(recipe, config=FULL_CONFIGS[family]))),
                 lambda p: write_random(diffusion_model(family, "cpu"), p, seed))
    ensure_built(encoder_file, dict(recipe, text_encoder="qwen3_4b"),
                 lambda p: write_random(text_encoder("cpu"), p, seed))
    ensure_vae_approx(vae.parent, vae.name, seed)
    return model_file, encoder_file, vae


def main(argv=None) -> None:
    from .tiny_models import DEFAULT_SEED
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", choices=list(FULL_CONFIGS), required=True)
    p.add_argument("--out-dir", type=Path, required=True)
    args = p.parse_args(argv)
    build(args.out_dir, args.family, DEFAULT_SEED)


if __name__ == "__main__":
    main()
