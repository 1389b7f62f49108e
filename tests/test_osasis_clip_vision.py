"""OSASIS without a style encoder: z_sem from a CLIP vision image embedding, in the nodes (SD1.x and SDXL) and
in the trainer, with a random full-size ViT-L/14 that ComfyUI's own Load CLIP Vision loads."""
import shutil

import pytest
import torch

from devkit.example_inputs import CONTENT_IMAGE, STYLE_REFERENCE
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def semantic_graph(family: str, clip_vision: str) -> dict:
    def semantic_encode(image_node: str) -> dict:
        return {"class_type": "StyleSmithOsasisSemanticEncode", "inputs": {
            "image": [image_node, 0], "clip": ["1", 1], "clip_vision": ["2", 0], "template": "unused",
            "placeholder": "sks"}}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS[family]}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": clip_vision}},
        "3": {"class_type": "LoadImage", "inputs": {"image": CONTENT_IMAGE}},
        "4": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "5": semantic_encode("3"),
        "6": semantic_encode("4"),
        "7": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["2", 0], "image": ["3", 0],
                                                           "crop": "center"}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["3", 0], "vae": ["1", 2]}},
        "9": {"class_type": "StyleSmithOsasisStructuralEncode", "inputs": {
            "model": ["1", 0], "latent": ["8", 0], "z_content": ["5", 0], "t0": 0.5, "steps": 10,
            "scheduler": "normal", "inversion_iterations": 1}},
        "10": {"class_type": "StyleSmithOsasisDecode", "inputs": {
            "model": ["1", 0], "structure": ["9", 0], "z_content": ["5", 0], "z_style": ["6", 0], "mix": 1.0,
            "spn_weight": 0.1, "lora_strength": 1.0}},
        "11": {"class_type": "StyleSmithOsasisDecode", "inputs": {
            "model": ["1", 0], "structure": ["9", 0], "z_content": ["5", 0], "mix": 0.0, "spn_weight": 0.1,
            "lora_strength": 1.0}},
    }


def run_semantics(host, family: str, clip_vision) -> dict:
    out = host.run(semantic_graph(family, clip_vision.name), outputs_of=("3", "5", "6", "7", "10", "11"))
    return {"image": out["3"][0], "z_content": out["5"][0], "z_style": out["6"][0],
            "embeds": out["7"][0]["image_embeds"].float(), "styled": out["10"][0]["samples"],
            "content_only": out["11"][0]["samples"]}


def check_decode_follows_the_code(out: dict) -> None:
    assert torch.isfinite(out["styled"]).all()
    change = (out["styled"] - out["content_only"]).norm() / out["content_only"].norm()
    assert change > 1e-4, "decoding under the style image's code must differ from the content's"


@pytest.mark.hosts
def test_sd15_code_is_the_image_embedding_as_one_token_and_differs_per_image(comfy_in_process, random_clip_vision):
    out = run_semantics(comfy_in_process, "sd15", random_clip_vision)
    (content, options), = out["z_content"]
    assert content.shape == (1, 1, 768)
    assert torch.allclose(content[:, 0], out["embeds"], atol=1e-5), "the code is CLIP Vision Encode's image_embeds"
    assert torch.allclose(options["pooled_output"], out["embeds"], atol=1e-5), "clip_l's pooled slot, same width"
    style = out["z_style"][0][0]
    assert (style - content).norm() > 0.1 * content.norm(), "each image has its own code, not one shared prompt"
    check_decode_follows_the_code(out)


@pytest.mark.hosts
@pytest.mark.sdxl
def test_sdxl_code_fills_the_slot_as_wide_as_the_embedding(comfy_in_process, random_clip_vision):
    out = run_semantics(comfy_in_process, "sdxl", random_clip_vision)
    (content, options), = out["z_content"]
    assert content.shape == (1, 1, 2048), "SDXL's context is clip_l (768) then clip_g (1280)"
    assert torch.allclose(content[:, 0, :768], out["embeds"], atol=1e-5)
    assert torch.count_nonzero(content[:, 0, 768:]) == 0, "a ViT-L/14 embedding has no place in clip_g's slot"
    assert options["pooled_output"].shape == (1, 1280) and torch.count_nonzero(options["pooled_output"]) == 0
    check_decode_follows_the_code(out)


def argv(checkpoint, images, clip_vision, loss_encoder, out):
    """Two iterations; E is the tiny style encoder, since back-propagating through a full ViT-L is slow on a CPU."""
    return ["--checkpoint", str(checkpoint), "--style", str(images / "style.png"), "--content", str(images / "content"),
            "--clip-vision", str(clip_vision), "--loss-encoder", str(loss_encoder), "--output-dir", str(out),
            "--resolution", "64", "--ddim-steps", "6", "--steps", "2", "--sampler-steps", "2", "--sdedit-candidates",
            "1", "--save-dtype", "fp32", "--batch-size", "1", "--no-resume"]


@pytest.mark.parametrize("family", ["sd15", pytest.param("sdxl", marks=pytest.mark.sdxl)])
def test_trainer_makes_the_nodes_code_and_records_it(family, tiny_checkpoint, tiny_models_dir, osasis_images,
                                                     random_clip_vision, comfy_in_process, tmp_path):
    from core.formats.osasis_style_file import load_osasis_style
    from trainers.osasis.train import parse_args, train
    from trainers.osasis.encoders import clip_vision_semantic_code
    encoder = tiny_models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS[family]
    result = train(parse_args(argv(tiny_checkpoint(family), osasis_images, random_clip_vision, encoder, tmp_path)))
    result.lora.detach()
    style = load_osasis_style(result.style_path)
    assert style.semantic == {"source": "clip_vision", "file": random_clip_vision.name}
    assert style.family == family and len(result.history["total"]) == 2
    assert all(torch.isfinite(v).all() for v in style.lora.values())
    context = result.photo.codes[0][0]
    assert context.shape[1] == 1, "the photo was inverted under its one-token image-embedding code"

    node = run_semantics(comfy_in_process, family, random_clip_vision)
    (expected, options), = node["z_content"]
    code = clip_vision_semantic_code(result.diffusion, random_clip_vision).codes(node["image"])
    assert len(code) == 1
    assert torch.allclose(code[0][0].cpu(), expected, atol=1e-5) and torch.allclose(
        code[0][1].cpu(), options["pooled_output"], atol=1e-5), "trainer and node must make the same z_sem"


def test_clip_vision_that_fits_no_text_encoder_or_is_not_one_is_refused(comfy_in_process, tmp_path):
    from comfy_adapter.clip_vision import load_clip_vision
    from core.formats.safe_files import WeightFileError
    from safetensors.torch import save_file
    save_file({"visual_projection.weight": torch.zeros(768, 1024)}, str(tmp_path / "partial.safetensors"))
    with pytest.raises(WeightFileError, match="not a CLIP vision model ComfyUI recognises"):
        load_clip_vision(tmp_path / "partial.safetensors")
    shutil.copyfile(tmp_path / "partial.safetensors", tmp_path / "partial.pt")
    with pytest.raises(WeightFileError, match="pickle file; StyleSmith refuses"):
        load_clip_vision(tmp_path / "partial.pt")
    (tmp_path / "truncated.safetensors").write_bytes((tmp_path / "partial.safetensors").read_bytes()[:200])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        load_clip_vision(tmp_path / "truncated.safetensors")
