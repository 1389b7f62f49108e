"""OSASIS structural codes on the DiT families: the flow ODE run backwards to t0 through the same nodes and the same
fixed-point refinement as the DDIM path, decoded back to the input."""
import pytest
import torch

from core import families
from devkit.tiny_dit_models import SPLIT_MODELS

from .test_dit_families import UNET_WEIGHT_DTYPE
from .test_osasis_nodes import decode, encode, node, relative_error

pytestmark = pytest.mark.hosts


def load_split(comfy_in_process, family: str) -> dict:
    """The family's MODEL and two codes of equal token count (Z-Image's tokenizer does not pad: mixing needs it)."""
    spec = SPLIT_MODELS[family]
    out = comfy_in_process.run({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": spec.diffusion_model,
                                                     "weight_dtype": UNET_WEIGHT_DTYPE[family]}},
        "2": {"class_type": "CLIPLoader", "inputs": {"clip_name": spec.text_encoder,
                                                     "type": families.FAMILIES[family].comfy_clip_type}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse on a cliff at dawn", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "thick oil paint, swirling brush strokes", "clip": ["2", 0]}},
    }, outputs_of=("1", "3", "4"))
    return {"model": out["1"][0], "z_content": out["3"][0], "z_style": out["4"][0]}


def mixing_sweep(host, loaded, structure, z_style, style_alone, name: str) -> tuple:
    """Decodes of one structural code: with z_content alone, with `style_alone` as z_content, and mixed with z_style
    at 0, 0.5 and 1; prints how far apart they are."""
    content_only = decode(host, loaded, structure, mix=0.0)
    style_only = decode(host, loaded, structure, mix=0.0, z_content=style_alone)
    mixed = {mix: decode(host, loaded, structure, mix=mix, z_style=z_style) for mix in (0, 0.5, 1)}
    print(f"{name} mixing: style-only vs content-only {relative_error(style_only, content_only):.2e}, mix 1 vs "
          f"style-only {relative_error(mixed[1], style_only):.2e}, mix 0.5 vs content-only "
          f"{relative_error(mixed[0.5], content_only):.2e}, vs style-only {relative_error(mixed[0.5], style_only):.2e}")
    return content_only, style_only, mixed


@pytest.fixture(scope="module")
def klein(comfy_in_process, tiny_split_model):
    tiny_split_model("klein")
    return load_split(comfy_in_process, "klein")


@pytest.fixture(scope="module")
def zimage(comfy_in_process, tiny_split_model):
    """The one Z-Image build of this file (0.9B parameters, fp8 on the CPU)."""
    tiny_split_model("zimage")
    return load_split(comfy_in_process, "zimage")


@pytest.mark.family("klein")
def test_flow_inversion_through_the_nodes_reconstructs_the_klein_latent(comfy_in_process, klein):
    latent = {"samples": torch.randn(1, 128, 4, 4, generator=torch.Generator().manual_seed(0))}
    refined = encode(comfy_in_process, klein, latent, iterations=12, t0=0.5, steps=20)
    plain = encode(comfy_in_process, klein, latent, iterations=0, t0=0.5, steps=20)
    assert refined.family == "klein" and len(refined.sigmas) == 11
    assert relative_error(refined.code, latent["samples"]) > 0.3, "x_t0 must be a noisy code, not the input"
    refined_error = relative_error(decode(comfy_in_process, klein, refined, mix=0.0), latent["samples"])
    plain_error = relative_error(decode(comfy_in_process, klein, plain, mix=0.0), latent["samples"])
    print(f"Klein reconstruction: refined {refined_error:.2e}, plain {plain_error:.2e}")
    assert refined_error <= 1e-3, refined_error
    assert plain_error > 10 * refined_error, (plain_error, refined_error)


@pytest.mark.family("klein")
def test_mixing_by_block_depth_sweeps_from_the_content_code_to_the_style_code(comfy_in_process, klein):
    """mix 0 decodes with z_content alone, mix 1 with z_style alone (through the two-stream blocks), 0.5 between."""
    latent = {"samples": torch.randn(1, 128, 4, 4, generator=torch.Generator().manual_seed(1))}
    structure = encode(comfy_in_process, klein, latent, iterations=0, t0=0.6, steps=10)
    content_only, style_only, mixed = mixing_sweep(comfy_in_process, klein, structure, klein["z_style"],
                                                   klein["z_style"], "Klein")
    assert relative_error(style_only, content_only) > 1e-2, "the two codes must decode differently"
    assert torch.equal(mixed[0], content_only)
    assert torch.equal(mixed[1], style_only), relative_error(mixed[1], style_only)
    assert relative_error(mixed[0.5], content_only) > 1e-3 and relative_error(mixed[0.5], style_only) > 1e-3


@pytest.mark.zimage
@pytest.mark.family("zimage")
@pytest.mark.workflow("osasis-stylise-zimage")   # skips where that workflow cannot run: no Lumina 2 layer patches
def test_mixing_by_layer_depth_on_z_image_sweeps_from_the_content_code_to_the_style_code(comfy_in_process, zimage):
    """Lumina 2 has no block-replace patches: the decode runs a doubled batch, one caption stream per half, and the
    layers' image tokens are blended after each layer (comfy_adapter/lumina_mixing.py). One step per decode: each
    forward pass of the 0.9B model takes seconds on the CPU."""
    latent = {"samples": torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(1))}
    structure = encode(comfy_in_process, zimage, latent, iterations=0, t0=0.5, steps=2)
    content_only, style_only, mixed = mixing_sweep(comfy_in_process, zimage, structure, zimage["z_style"],
                                                   zimage["z_style"], "Z-Image")
    apart = relative_error(style_only, content_only)
    assert apart > 1e-3, "the two codes must decode differently"
    assert torch.equal(mixed[0], content_only)
    assert torch.equal(mixed[1], style_only), relative_error(mixed[1], style_only)
    assert relative_error(mixed[0.5], content_only) > apart / 10 and relative_error(mixed[0.5], style_only) > apart / 10


@pytest.mark.zimage
@pytest.mark.family("zimage")
def test_a_lumina_model_that_calls_no_layer_patches_stops_the_mixed_decode_naming_the_versions(comfy_in_process,
                                                                                                zimage):
    """A host whose NextDiT never calls the "double_block" patches (0.3.75, 0.3.64; here simulated by taking ours
    out) would decode z_content alone: the first mixed step stops instead."""
    from comfy_adapter.lumina_mixing import with_lumina_mixing
    mixed = with_lumina_mixing(zimage["model"], zimage["z_style"][0][0], 0.5)
    mixed.model_options["transformer_options"]["patches"]["double_block"] = []
    structure = encode(comfy_in_process, zimage, {"samples": torch.randn(1, 16, 4, 4)}, iterations=0, t0=0.5, steps=2)
    with pytest.raises(RuntimeError, match=r"calls no \"double_block\" patches .* update ComfyUI \(0.33.0 has them; "
                                           r"0.3.75 and 0.3.64 do not\)"):
        decode(comfy_in_process, {**zimage, "model": mixed}, structure, mix=0.0)


@pytest.mark.family("klein")
def test_an_sd15_osasis_style_on_klein_names_both_families(comfy_in_process, klein):
    from devkit.tiny_osasis_styles import DEFAULT_OSASIS_STYLES
    style = node(comfy_in_process, "StyleLoader")(style_name=DEFAULT_OSASIS_STYLES["sd15"])[0]
    structure = encode(comfy_in_process, klein, {"samples": torch.randn(1, 128, 4, 4)}, iterations=0, t0=0.2, steps=10)
    with pytest.raises(ValueError, match="The OSASIS style is for SD1.x but the MODEL is Flux.2 Klein 4B"):
        decode(comfy_in_process, klein, structure, osasis_style=style)
