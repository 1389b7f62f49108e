"""Flux.1, the third DiT family, added as one registry entry: the registry tells it from Flux.2 (both ComfyUI `Flux`
configs), the tiny split files load through UNETLoader, DualCLIPLoader (type flux) and VAELoader as Flux.1, the
stock graph samples, style tokens reach both text encoders (clip_l, t5xxl) exactly as stock `embedding:`, a head for
another encoder is refused naming both, OSASIS inverts the flow ODE on it, StyleForge trains a LoRA the stock
loader takes whole, and style vectors get gradients through both its encoders (style-token training)."""
import pytest
import torch
from safetensors import safe_open

from core import families
from core.formats.embedding_file import read_embedding
from devkit.example_inputs import STYLE_REFERENCE
from devkit.tiny_dit_models import SPLIT_MODELS, stock_text_to_image, unsupported_here
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS

from .test_dit_families import PROMPT, free_models
from .test_osasis_dit import mixing_sweep
from .test_osasis_nodes import decode, encode, relative_error
from .test_style_tokens_dit import PROMPTS, node_error

FLUX1 = families.FAMILIES["flux1"]
BOTH = {"clip_l": 768, "t5xxl": 4096}


def test_registry_tells_flux1_from_flux2_and_its_neighbours():
    F = families.FAMILIES
    # Flux.2's config derives from Flux.1's: the context width tells them apart.
    assert families.family_of_comfy_config({"Flux", "BASE"}, 4096) is F["flux1"]
    assert families.family_of_comfy_config({"FluxSchnell", "Flux", "BASE"}, 4096) is F["flux1"]
    assert families.family_of_comfy_config({"Flux2", "Flux", "BASE"}, 7680) is F["klein"]
    assert families.family_of_comfy_config({"Chroma", "BASE"}, 4096) is None
    assert families.family_of_comfy_text_encoder({"FluxClipModel_", "FluxClipModel", "Module"}, BOTH) is F["flux1"]
    assert families.family_of_comfy_text_encoder({"SD3ClipModel", "Module"}, BOTH) is None
    assert families.family_of_text_encoders(BOTH) is F["flux1"]
    # A Flux.1 style encoder's clip_l head serves SD1.x too; an SD1.x one lacks Flux.1's t5xxl.
    assert [f.key for f in families.families_using(BOTH)] == ["sd15", "flux1"]
    assert [f.key for f in families.families_using({"clip_l": 768})] == ["sd15"]
    assert families.text_encoder_kind("t5xxl") == "t5"
    assert (FLUX1.pooled_from, FLUX1.context_width, FLUX1.latent_channels) == ("clip_l", 4096, 16)


def test_flux1_needs_no_family_gate_but_its_tiny_files_need_a_host_that_reads_the_head_count():
    assert families.unsupported_on_host(FLUX1, (0, 3, 64)) is None
    assert unsupported_here("flux1", (0, 3, 75)) == (
        "the tiny Flux.1 files need ComfyUI 0.9.2 or newer (Flux detection reads the head count off the file); this "
        "host is ComfyUI 0.3.75")
    assert unsupported_here("flux1", (0, 9, 2)) is None
    assert unsupported_here("zimage", (0, 3, 64)) == ("Z-Image needs ComfyUI 0.3.75 or newer; this host is "
                                                       "ComfyUI 0.3.64")


@pytest.mark.hosts
@pytest.mark.family("flux1")
def test_stock_loaders_and_the_trainer_split_loader_agree(comfy_in_process, tiny_split_model, tiny_models_dir):
    """UNETLoader, DualCLIPLoader (flux) and VAELoader load the tiny files as Flux.1 (the context from T5-XXL, the
    pooled vector from CLIP-L); the trainer-side loader gives the stock conditioning exactly; the stock graph samples
    a non-flat image."""
    from comfy_adapter.families import family_of_clip, family_of_model, text_encoder_widths
    from comfy_adapter.split_files import open_split_files
    spec = tiny_split_model("flux1")
    out = comfy_in_process.run({"1": {"class_type": "UNETLoader", "inputs": {"unet_name": spec.diffusion_model,
                                                                             "weight_dtype": "default"}},
                                "2": spec.clip_loader(),
                                "3": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["2", 0]}}},
                               outputs_of=("1", "2", "3"))
    model, clip, ((stock_cond, extras),) = out["1"][0], out["2"][0], out["3"][0]
    assert type(model.model.model_config).__name__ == "Flux" and family_of_model(model) is FLUX1
    assert family_of_clip(clip) is FLUX1 and text_encoder_widths(clip) == BOTH
    assert stock_cond.shape == (1, 256, 4096) and extras["pooled_output"].shape == (1, 768)
    del model, clip, out
    free_models()
    diffusion = open_split_files(tiny_models_dir / "diffusion_models" / spec.diffusion_model,
                                 [tiny_models_dir / "text_encoders" / name for name in spec.text_encoders],
                                 "taef1", torch.device("cpu"))
    assert diffusion.family == "flux1" and diffusion.vae.latent_channels == 16
    encoded = diffusion.clip.encode_from_tokens(diffusion.clip.tokenize(PROMPT), return_dict=True)
    assert torch.equal(encoded["cond"], stock_cond) and torch.equal(encoded["pooled_output"], extras["pooled_output"])
    del diffusion
    free_models()
    images = comfy_in_process.run(stock_text_to_image("flux1", PROMPT, seed=7), outputs_of=("8",))["8"][0]
    assert images.shape == (1, 64, 64, 3) and torch.isfinite(images).all()
    assert images.std().item() > 0.02, f"flat image (std {images.std().item():.4f})"


def style_graph(text: str, encoder: str = DEFAULT_STYLE_ENCODERS["flux1"]) -> dict:
    return {
        "1": SPLIT_MODELS["flux1"].clip_loader(),
        "2": {"class_type": "StyleSmithStyleEncoderLoader", "inputs": {"encoder_name": encoder}},
        "3": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "4": {"class_type": "StyleSmithImageToStyleTokens",
              "inputs": {"style_encoder": ["2", 0], "image": ["3", 0], "batch_mode": "per image"}},
        "5": {"class_type": "StyleSmithEncodePromptWithStyle",
              "inputs": {"clip": ["1", 0], "style_tokens": ["4", 0], "text": text, "placeholder": "sks"}},
    }


def stock_encode(graph: dict, node: str, text: str) -> dict:
    graph[node] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 0]}}
    return graph


@pytest.mark.hosts
@pytest.mark.family("flux1")
def test_prompt_with_style_tokens_equals_stock_embedding_on_both_encoders(comfy_in_process, tiny_split_model):
    """Save Style as Embedding writes clip_l and t5xxl; the node's T5 context and CLIP-L pooled vector are
    bit-identical to stock CLIPTextEncode with `embedding:NAME` in the placeholder's place (mid-prompt, at the end,
    absent), and the style changes both; Concat Style appends the encoded style rows to the T5 context."""
    tiny_split_model("flux1")
    name = "test_flux1_style"
    export = style_graph(PROMPTS[0])
    export["6"] = {"class_type": "StyleSmithSaveStyleEmbedding",
                   "inputs": {"style_tokens": ["4", 0], "name": name, "overwrite": True}}
    saved = comfy_in_process.run(export, outputs_of=("4", "6"))
    path = comfy_in_process.base_dir / "models" / "embeddings" / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        assert sorted(f.keys()) == ["clip_l", "t5xxl"]
    for key, width in BOTH.items():
        assert saved["4"][0].tokens[key].shape[-1] == width
        assert torch.equal(read_embedding(path)[key], saved["4"][0].tokens[key][0])
    cases = [(text, text.replace("sks", f"embedding:{name}")) for text in PROMPTS]
    cases.append(("a photo of a cat", f"a photo of a cat embedding:{name}"))
    for ours_text, stock_text in cases:
        graph = stock_encode(stock_encode(style_graph(ours_text), "6", stock_text), "7", ours_text)
        out = comfy_in_process.run(graph, outputs_of=("5", "6", "7"))
        (ours, ours_extras), = out["5"][0]
        (stock, stock_extras), = out["6"][0]
        (plain, plain_extras), = out["7"][0]
        assert ours.shape == stock.shape and ours.shape[-1] == 4096, ours_text
        assert (ours - stock).abs().max().item() == 0, ours_text
        assert torch.equal(ours_extras["pooled_output"], stock_extras["pooled_output"]), ours_text
        assert not torch.equal(ours[:, :plain.shape[1]], plain), f"T5-XXL got no style: {ours_text}"
        assert not torch.equal(ours_extras["pooled_output"], plain_extras["pooled_output"]), f"CLIP-L: {ours_text}"
    graph = stock_encode(style_graph(""), "6", "a lighthouse on a cliff")
    graph["7"] = {"class_type": "StyleSmithConcatStyle", "inputs": {"conditioning": ["6", 0], "strength": 0.5,
                                                                    "style_tokens": ["4", 0], "clip": ["1", 0]}}
    out = comfy_in_process.run(graph, outputs_of=("5", "6", "7"))
    (style, _), (text, text_extras), (joined, joined_extras) = out["5"][0][0], out["6"][0][0], out["7"][0][0]
    assert joined.shape == (1, text.shape[1] + style.shape[1], 4096), "Concat Style appends the encoded style rows"
    assert torch.equal(joined[:, :text.shape[1]], text) and torch.equal(joined[:, text.shape[1]:], style * 0.5)
    assert torch.equal(joined_extras["pooled_output"], text_extras["pooled_output"])


@pytest.mark.hosts
@pytest.mark.family("flux1")
@pytest.mark.parametrize("encoder, parts", [
    ("klein", ("heads for qwen3_4b (Qwen3-4B, 2560)", "this CLIP is Flux.1's",
               "clip_l (CLIP-L, 768), t5xxl (T5-XXL, 4096): no head for clip_l, t5xxl",
               "a style encoder with clip_l and t5xxl heads (trained for Flux.1)")),
    ("sd15", ("heads for clip_l (CLIP-L, 768)", "this CLIP is Flux.1's", "no head for t5xxl",
              "or use the CLIP of SD1.x.")),
], ids=["qwen3_4b-head", "clip_l-head-only"])
def test_a_head_for_another_encoder_on_flux1_names_both(comfy_in_process, tiny_split_model, encoder, parts):
    tiny_split_model("flux1")
    message = node_error(comfy_in_process, style_graph(PROMPTS[0], DEFAULT_STYLE_ENCODERS[encoder]))
    for part in parts:
        assert part in message, message


@pytest.mark.hosts
@pytest.mark.family("flux1")
def test_flow_inversion_reconstructs_the_flux1_latent_and_mixing_goes_by_block_depth(comfy_in_process,
                                                                                     tiny_split_model):
    """The structural code decodes back to the input; z_style mixes in by block depth through Flux's double- and
    single-stream blocks as on Klein: mix 0 is z_content alone, mix 1 z_style's text stream alone, 0.5 between. The
    pooled CLIP-L vector modulates every block at once, so it stays z_content's."""
    spec = tiny_split_model("flux1")
    out = comfy_in_process.run({
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": spec.diffusion_model, "weight_dtype": "default"}},
        "2": spec.clip_loader(),
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["2", 0]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "thick oil paint, swirling", "clip": ["2", 0]}},
    }, outputs_of=("1", "3", "4"))
    flux1 = {"model": out["1"][0], "z_content": out["3"][0]}
    (style_tokens, _), = out["4"][0]
    latent = {"samples": torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(0))}
    refined = encode(comfy_in_process, flux1, latent, iterations=12, t0=0.5, steps=20)
    plain = encode(comfy_in_process, flux1, latent, iterations=0, t0=0.5, steps=20)
    assert refined.family == "flux1"
    refined_error = relative_error(decode(comfy_in_process, flux1, refined, mix=0.0), latent["samples"])
    plain_error = relative_error(decode(comfy_in_process, flux1, plain, mix=0.0), latent["samples"])
    print(f"Flux.1 reconstruction: refined {refined_error:.2e}, plain {plain_error:.2e}")
    assert refined_error <= 1e-3, refined_error
    structure = encode(comfy_in_process, flux1, latent, iterations=0, t0=0.6, steps=10)
    style_stream = [[style_tokens, dict(flux1["z_content"][0][1])]]     # z_style's tokens, z_content's pooled vector
    content_only, style_only, mixed = mixing_sweep(comfy_in_process, flux1, structure, out["4"][0], style_stream,
                                                   "Flux.1")
    assert relative_error(style_only, content_only) > 1e-2, "the two codes must decode differently"
    assert torch.equal(mixed[0], content_only) and torch.equal(mixed[1], style_only)
    assert relative_error(mixed[0.5], content_only) > 1e-3 and relative_error(mixed[0.5], style_only) > 1e-3
    assert plain_error > 10 * refined_error, (plain_error, refined_error)


@pytest.mark.hosts
@pytest.mark.family("flux1")
def test_styleforge_trains_on_flux1_and_the_stock_loader_takes_every_key(comfy_in_process, tiny_split_model,
                                                                         tiny_models_dir, tmp_path, caplog):
    """The StyleForge trainer on Flux.1's split files (both text encoders): the held-out flow-matching loss falls, the
    LoRA's keys are ComfyUI-native and its family flux1, and stock LoraLoaderModelOnly loads every key."""
    import logging
    from core.formats.lora_file import read_lora
    from devkit.example_inputs import write_styleforge_sets
    from trainers.styleforge import parse_args, train
    from .test_styleforge_dit import held_out_loss
    spec, models = tiny_split_model("flux1"), tiny_models_dir
    (tmp_path / "data").mkdir()
    sets = write_styleforge_sets(tmp_path / "data", references=2)
    encoders = [arg for name in spec.text_encoders for arg in ("--text-encoder", str(models / "text_encoders" / name))]
    result = train(parse_args([
        "--diffusion-model", str(models / "diffusion_models" / spec.diffusion_model), *encoders,
        "--vae", str(models / "vae_approx" / spec.vae), "--styleref", str(sets["refs"]), "--aux", str(sets["aux"]),
        "--output-dir", str(tmp_path / "out"), "--resolution", "64", "--steps", "12", "--lr", "1e-2", "--rank", "4",
        "--sample-steps", "0", "--save-dtype", "fp32", "--workers", "0", "--no-resume"]))
    (d,) = result.data
    after = held_out_loss(result, d)
    result.loras["unet"].detach()
    before = held_out_loss(result, d)
    result.loras["unet"].attach()
    assert after < 0.9 * before, f"held-out flow-matching loss {before:.4f} -> {after:.4f}"
    tensors, info = read_lora(result.lora_path)
    assert info.family == "flux1" and "text_encoder" not in result.loras
    assert tensors and all(k.startswith("diffusion_model.") for k in tensors)
    (model,) = comfy_in_process.node_classes["UNETLoader"]().load_unet(spec.diffusion_model, "default")
    folder = comfy_in_process.base_dir / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test-styleforge-flux1.safetensors").write_bytes(result.lora_path.read_bytes())
    with caplog.at_level(logging.WARNING):
        (patched,) = comfy_in_process.node_classes["LoraLoaderModelOnly"]().load_lora_model_only(
            model, "test-styleforge-flux1.safetensors", 1.0)
    assert not [r.getMessage() for r in caplog.records if "lora key not loaded" in r.getMessage()]
    assert len(patched.patches) == len(tensors) // 3


@pytest.mark.hosts
@pytest.mark.family("flux1")
def test_style_vectors_get_gradients_through_t5_and_clip_l(comfy_in_process, tiny_split_model, tiny_models_dir):
    """Style-token training differentiates the conditioning w.r.t. the vectors: ComfyUI's T5 adds its residuals in
    place (x += ff(norm(x))) after its T5LayerNorm saved x, which autograd refuses unless that norm gets a copy
    (ComfyDiffusion.allow_text_encoder_gradients). Both encoders' vectors get a gradient; values are the stock ones."""
    from comfy_adapter.diffusion import encode_prompt_with_style
    from comfy_adapter.split_files import open_split_files
    spec, models = tiny_split_model("flux1"), tiny_models_dir
    diffusion = open_split_files(models / "diffusion_models" / spec.diffusion_model,
                                 [models / "text_encoders" / name for name in spec.text_encoders],
                                 models / "vae_approx" / spec.vae, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    vectors = {key: (torch.randn(8, width, generator=generator) * 0.02).requires_grad_() for key, width in BOTH.items()}
    with torch.no_grad():
        stock = encode_prompt_with_style(diffusion, "a lighthouse, in the style of sks", vectors, "sks")
    diffusion.allow_text_encoder_gradients()
    cond, pooled = encode_prompt_with_style(diffusion, "a lighthouse, in the style of sks", vectors, "sks")
    assert torch.equal(cond, stock[0]) and torch.equal(pooled, stock[1])
    (cond.square().mean() + pooled.square().mean()).backward()
    assert all(vectors[key].grad is not None and vectors[key].grad.abs().max() > 0 for key in BOTH)
