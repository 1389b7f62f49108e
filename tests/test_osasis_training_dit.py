"""The OSASIS one-shot trainer on Flux.2 Klein 4B and Z-Image from their split files (diffusion model, Qwen3-4B, VAE).

Held-out check: a content image the run never saw is inverted once by the frozen model A under its own z_sem; that
x_t0 is the fixed noise. B's content loss (1.0 cross-domain + 0.5 in-domain, as trained) over the reverse from it,
with no optimiser step, is taken for B = A (no LoRA, an untrained SPN) and for the trained LoRA and SPN: training
must lower it.
"""
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from core.formats.osasis_style_file import load_osasis_style
from core.osasis.spn import StructurePreservingNetwork
from devkit.example_inputs import content_image
from devkit.tiny_dit_models import SPLIT_MODELS
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from trainers.osasis.train import parse_args, train

PARITY_CONTENT = "stylesmith-osasis-parity-content-klein.png"
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
KLEIN = pytest.mark.family("klein")
# Z-Image's 0.9B frozen base is held in fp8 (0.9 GB, as the node tests load it) and run for one reverse step per
# iteration (t0 0.5 of 2 steps): each step of it takes seconds on the CPU.
RUN = {"klein": ["--ddim-steps", "4"], "zimage": ["--ddim-steps", "2", "--base-weight-dtype", "fp8_e4m3fn"]}


def split_argv(family, models, images, photo, out):
    spec = SPLIT_MODELS[family]
    return ["--diffusion-model", str(models / "diffusion_models" / spec.diffusion_model),
            "--text-encoder", str(models / "text_encoders" / spec.text_encoder),
            "--vae", str(models / "vae_approx" / spec.vae), "--style", str(images / "style.png"),
            "--style-photo", str(photo), "--content", str(images / "content"), "--style-encoder",
            str(models / "style_encoders" / DEFAULT_STYLE_ENCODERS[family]), "--output-dir", str(out),
            "--resolution", "64", *RUN[family], "--inversion-iterations", "0", "--steps", "3",
            "--lr", "1e-3", "--spn-lr", "1e-3", "--save-dtype", "fp32", "--batch-size", "1", "--workers", "0",
            "--no-resume"]


def as_image(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255)[None]


def train_on(family, tiny_split_model, tiny_models_dir, osasis_images, tmp_path_factory):
    """Three iterations; the photoreal counterpart is the style image in grey (SDEdit would cost minutes here)."""
    tiny_split_model(family)
    out = tmp_path_factory.mktemp(f"osasis-{family}")
    Image.open(osasis_images / "style.png").convert("L").save(out / "photo.png")
    args = parse_args(split_argv(family, tiny_models_dir, osasis_images, out / "photo.png", out / "run"))
    return args, train(args)


@pytest.fixture(scope="module")
def trained(tiny_split_model, tiny_models_dir, osasis_images, tmp_path_factory):
    return train_on("klein", tiny_split_model, tiny_models_dir, osasis_images, tmp_path_factory)


@pytest.fixture(scope="module")
def trained_zimage(tiny_split_model, tiny_models_dir, osasis_images, tmp_path_factory):
    """The one Z-Image trainer run of this file."""
    return train_on("zimage", tiny_split_model, tiny_models_dir, osasis_images, tmp_path_factory)


def held_out_content_losses(trained) -> tuple[float, float]:
    """B's content loss from the held-out image's fixed x_t0: (B = A with an untrained SPN, the trained B)."""
    from trainers.osasis.encoders import load_encoders
    from trainers.osasis.step import OsasisStep, invert_all
    args, result = trained
    diffusion = result.diffusion
    code, encode = load_encoders(diffusion, args)
    image = as_image(content_image(64).transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    result.lora.detach()
    held = invert_all(diffusion, image, code.codes(image), result.sigmas, args.inversion_iterations,
                      args.loss_resolution, "held-out content")

    def loss(spn) -> float:
        step = OsasisStep(diffusion, result.lora, spn, encode, None, result.images.style, result.images.photo, args)
        x, total = held.code, 0.0
        with torch.no_grad():
            for k in range(len(result.sigmas) - 1):
                x, value, _ = step.content_step(x, held, held.denoiser_inputs(diffusion), float(result.sigmas[k]),
                                                float(result.sigmas[k + 1]), result.timesteps[k])
                total += value.item()
        return total

    before = loss(StructurePreservingNetwork(result.spn.config["latent_channels"]))
    result.lora.attach()
    return before, loss(result.spn)


@KLEIN
def test_klein_style_file_records_its_family_with_comfy_keys_and_a_128_channel_spn(trained):
    _, result = trained
    style = load_osasis_style(result.style_path)
    assert style.family == "klein" and style.spn.config["latent_channels"] == 128
    assert style.lora and all(k.startswith("diffusion_model.") for k in style.lora), sorted(style.lora)[:3]
    assert any(".single_blocks." in k for k in style.lora) and any(".double_blocks." in k for k in style.lora)
    assert max(v.abs().max() for k, v in style.lora.items() if k.endswith("lora_up.weight")) > 0
    assert style.spn.conv_out.weight.abs().max() > 0, "the SPN must have been trained"


@KLEIN
def test_klein_training_lowers_the_held_out_content_loss(trained):
    before, after = held_out_content_losses(trained)
    print(f"Klein OSASIS held-out content loss: before {before:.4f}, after {after:.4f}; "
          f"training total {[round(v, 4) for _, v in trained[1].history['total']]}")
    assert after < 0.98 * before, (before, after)


@KLEIN
def test_the_decode_node_reproduces_the_trainers_stylised_klein_latent(trained, osasis_images, comfy_in_process):
    """Stock split loaders, Semantic Encode through Qwen3-4B, plain inversion, the written style file (its
    diffusion_model.* LoRA through ComfyUI's LoRA patching) against the trainer's in-memory decode."""
    from trainers.osasis.train import stylise
    args, result = trained
    spec = SPLIT_MODELS["klein"]
    shutil.copyfile(osasis_images / "content" / "0.png", comfy_in_process.base_dir / "input" / PARITY_CONTENT)
    folder = comfy_in_process.base_dir / "models" / "osasis"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result.style_path, folder / "parity-klein.safetensors")
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": spec.diffusion_model, "weight_dtype": "default"}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": spec.text_encoder, "type": "flux2"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": spec.vae}},
        "4": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": DEFAULT_STYLE_ENCODERS["klein"]}},
        "5": {"class_type": "LoadImage", "inputs": {"image": PARITY_CONTENT}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": ["5", 0], "vae": ["3", 0]}},
        "7": {"class_type": "StyleSmithOsasisSemanticEncode",
              "inputs": {"image": ["5", 0], "clip": ["2", 0], "style_encoder": ["4", 0],
                         "template": args.template, "placeholder": args.placeholder}},
        "8": {"class_type": "StyleSmithOsasisStructuralEncode",
              "inputs": {"model": ["1", 0], "latent": ["6", 0], "z_content": ["7", 0], "t0": args.t0,
                         "steps": args.ddim_steps, "scheduler": "normal", "inversion_iterations": 0}},
        "9": {"class_type": "StyleSmithOsasisStyleLoader", "inputs": {"style_name": "parity-klein.safetensors"}},
        "10": {"class_type": "StyleSmithOsasisDecode",
               "inputs": {"model": ["1", 0], "structure": ["8", 0], "z_content": ["7", 0], "mix": 0.0,
                          "spn_weight": args.spn_weight, "lora_strength": 1.0, "osasis_style": ["9", 0]}},
    }
    node_latent = comfy_in_process.run(graph, outputs_of=("10",))["10"][0]["samples"]
    diffusion = result.diffusion
    result.lora.attach()
    ours = stylise(diffusion, result.lora, result.spn, result.content, result.sigmas, result.timesteps, args.spn_weight)
    ours = diffusion.unet.latent_format.process_out(ours).cpu()
    base = diffusion.unet.latent_format.process_out(result.content.clean).cpu()
    print(f"Klein OSASIS node vs trainer: {((node_latent - ours).norm() / ours.norm()).item():.2e}, "
          f"style's move {((ours - base).norm() / base.norm()).item():.2e}")
    assert ((ours - base).norm() / base.norm()).item() > 1e-2, "the style must move the latent"
    assert ((node_latent - ours).norm() / ours.norm()).item() <= 1e-5


@pytest.mark.zimage
@pytest.mark.family("zimage")
def test_content_codes_join_as_comfyui_joins_them_and_rows_it_runs_apart_are_refused(trained_zimage):
    """A batch's denoiser inputs come from ComfyUI's own joining of conditionings: codes of one length make one
    batch; on Z-Image a caption a token shorter (another caption token count, so ComfyUI would run it apart) stops
    with what to change."""
    from trainers.osasis.step import Encoded
    _, result = trained_zimage
    photo = result.photo
    cond, pooled = photo.codes[0]

    def pair(second) -> Encoded:
        return Encoded(photo.images.repeat(2, 1, 1, 1), photo.clean.repeat(2, 1, 1, 1), [(cond, pooled), second],
                       photo.code.repeat(2, 1, 1, 1))

    joined = pair((cond, pooled)).denoiser_inputs(result.diffusion)["c_crossattn"]
    assert torch.equal(joined, torch.cat([cond, cond]))
    with pytest.raises(ValueError, match="as one batch .* same template and style encoder"):
        pair((cond[:, :-1], pooled)).denoiser_inputs(result.diffusion)


@pytest.mark.family("zimage")
def test_z_image_training_lowers_the_held_out_content_loss_and_records_its_family(trained_zimage):
    """On Z-Image's split files: z_sem through Qwen3-4B (ComfyUI's Z-Image encoder), a 16-channel SPN, native
    diffusion_model.* LoRA names on the NextDiT layers and refiners."""
    _, result = trained_zimage
    style = load_osasis_style(result.style_path)
    assert style.family == "zimage" and style.spn.config["latent_channels"] == 16
    assert style.semantic["source"] == "style_encoder", style.semantic
    assert style.semantic["file"] == DEFAULT_STYLE_ENCODERS["zimage"], "Klein's Qwen3-4B style encoder serves Z-Image"
    assert style.lora and all(k.startswith("diffusion_model.") for k in style.lora), sorted(style.lora)[:3]
    assert any(".layers." in k for k in style.lora) and any(".context_refiner." in k for k in style.lora)
    before, after = held_out_content_losses(trained_zimage)
    print(f"Z-Image OSASIS held-out content loss: before {before:.4f}, after {after:.4f}; "
          f"training total {[round(v, 4) for _, v in result.history['total']]}")
    assert after < 0.98 * before, (before, after)
