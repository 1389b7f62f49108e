"""StyleForge on Z-Image, from its tiny split files: the loss falls on a fixed-noise held-out check; the LoRA has
ComfyUI-native keys, records its family and stock LoraLoaderModelOnly loads every key. The tiny Z-Image is 0.9B
parameters (its width 3840 and 2 + 2 refiner blocks are what ComfyUI detects), so one run serves every check.
Style-token stage 1's held-out check on Z-Image is in test_style_token_training_dit.py."""
import logging

import pytest
import torch
from safetensors import safe_open

from core.formats.lora_file import read_lora
from devkit.example_inputs import write_styleforge_sets
from tests.test_styleforge import encoded
from tests.test_styleforge_dit import lora_file
from trainers.styleforge import parse_args, train

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.hosts, pytest.mark.family("zimage")]

HELD_OUT_SEEDS = range(10_000, 10_002)     # noise and sigma of the held-out check; training draws from other seeds
LORA_LAYERS = ("attention.qkv", "attention.out", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


def zimage_files(tiny_models_dir, spec) -> list[str]:
    return ["--diffusion-model", str(tiny_models_dir / "diffusion_models" / spec.diffusion_model),
            "--text-encoder", str(tiny_models_dir / "text_encoders" / spec.text_encoder),
            "--vae", str(tiny_models_dir / "vae_approx" / spec.vae)]


@pytest.fixture(scope="module")
def zimage_run(comfy_in_process, tiny_split_model, tiny_models_dir, tmp_path_factory):
    """One StyleForge run on tiny Z-Image (the in-process host comes first: it configures ComfyUI in this process)."""
    sets = write_styleforge_sets(tmp_path_factory.mktemp("zimage-data"), references=2)
    argv = [*zimage_files(tiny_models_dir, tiny_split_model("zimage")), "--styleref", str(sets["refs"]),
            "--aux", str(sets["aux"]), "--output-dir", str(tmp_path_factory.mktemp("zimage-run")),
            "--resolution", "64", "--steps", "6", "--lr", "3e-3", "--rank", "4", "--sample-steps", "0",
            "--save-dtype", "fp32", "--workers", "0", "--no-resume"]
    return train(parse_args(argv))


def held_out_loss(result) -> float:
    """Flow-matching loss of the StyleRef images under the instance prompt on fixed noises and sigmas the run never
    drew (HELD_OUT_SEEDS), every (seed, image) pair in one denoiser pass."""
    diffusion, d = result.diffusion, result.data[0]
    with torch.no_grad():
        cond, pooled = diffusion.encode_prompt(d.instance_prompt)
        latents = encoded(result, d.styleref).repeat(len(HELD_OUT_SEEDS), 1, 1, 1)
        generators = [torch.Generator().manual_seed(s) for s in HELD_OUT_SEEDS for _ in d.styleref]
        return diffusion.diffusion_losses(latents, cond.expand(len(latents), -1, -1), pooled, generators).mean().item()


def test_styleforge_loss_falls_on_the_held_out_check(zimage_run):
    assert zimage_run.diffusion.family == "zimage"
    after = held_out_loss(zimage_run)
    zimage_run.loras["unet"].detach()
    try:
        before = held_out_loss(zimage_run)
    finally:
        zimage_run.loras["unet"].attach()
    print(f"Z-Image StyleForge held-out loss {before:.4f} -> {after:.4f}")
    # Measured 1.960 -> 1.889 (-3.6%); deterministic (fixed seeds). At width 3840 a larger learning rate (1e-2, Klein's)
    # or more steps at it overshoot: 6 steps at 1e-2 raised the loss 20%, 6 at 3e-3 lower it.
    assert after <= 0.98 * before, f"held-out flow-matching loss {before:.4f} -> {after:.4f}"


def test_the_lora_has_native_keys_and_records_z_image(zimage_run):
    """Five linear layers of every joint block (the main layers and both refiners), keyed `diffusion_model.<path>`."""
    tensors, info = read_lora(zimage_run.lora_path)
    assert info.family == "zimage" and [c.trigger for c in info.components] == ["zwx style"]
    blocks = [n for n, m in zimage_run.diffusion.unet_module.named_modules()
              if type(m).__name__ == "JointTransformerBlock"]
    assert {b.split(".")[0] for b in blocks} == {"layers", "noise_refiner", "context_refiner"}
    modules = {f"diffusion_model.{b}.{layer}" for b in blocks for layer in LORA_LAYERS}
    assert set(tensors) == {f"{m}.{part}" for m in modules for part in ("lora_down.weight", "lora_up.weight", "alpha")}
    with safe_open(str(zimage_run.lora_path), "pt") as f:
        assert f.metadata()["stylesmith.family"] == "zimage"


def test_stock_lora_loader_model_only_loads_every_key(zimage_run, comfy_in_process, tiny_split_model, caplog):
    stock = comfy_in_process.node_classes
    tensors, _ = read_lora(zimage_run.lora_path)
    (model,) = stock["UNETLoader"]().load_unet(tiny_split_model("zimage").diffusion_model, "fp8_e4m3fn")
    with caplog.at_level(logging.WARNING):
        (patched,) = stock["LoraLoaderModelOnly"]().load_lora_model_only(
            model, lora_file(comfy_in_process, zimage_run), 1.0)
    assert not [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(patched.patches) == len(tensors) // 3
