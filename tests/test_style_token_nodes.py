"""Style-token nodes on the real host: shapes, injection parity, embedding export, caching, errors."""
import copy
import pickle

import pytest
import torch

from devkit.example_inputs import STYLE_REFERENCE
from devkit.in_process import NodeExecutionError
from devkit.paths import comfyui_dir
from devkit.tiny_loras import DEFAULT_LORAS
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from devkit.workflows import api_workflows

pytestmark = pytest.mark.hosts

DEFAULT_LORA = next(iter(DEFAULT_LORAS))
PROMPT_BEFORE, PROMPT_AFTER = "a photo of a cat in the style of", ", at night"


def style_graph(family: str, text: str = f"{PROMPT_BEFORE} sks{PROMPT_AFTER}", encoder_family: str | None = None,
                batch_mode: str = "per image") -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS[family]}},
        "2": {"class_type": "StyleSmithStyleEncoderLoader",
              "inputs": {"encoder_name": DEFAULT_STYLE_ENCODERS[encoder_family or family]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "4": {"class_type": "StyleSmithImageToStyleTokens",
              "inputs": {"style_encoder": ["2", 0], "image": ["3", 0], "batch_mode": batch_mode}},
        "5": {"class_type": "StyleSmithEncodePromptWithStyle",
              "inputs": {"clip": ["1", 1], "style_tokens": ["4", 0], "text": text, "placeholder": "sks"}},
    }


@pytest.fixture(scope="module")
def sd15(comfy_in_process):
    out = comfy_in_process.run(style_graph("sd15"), outputs_of=("1", "2", "4", "5"))
    return {"clip": out["1"][1], "encoder": out["2"][0], "tokens": out["4"][0], "cond": out["5"][0]}


def test_sd15_shapes(sd15):
    assert sd15["tokens"].tokens["clip_l"].shape == (1, 8, 768)
    (cond, extra), = sd15["cond"]
    assert cond.shape == (1, 77, 768) and extra["pooled_output"].shape == (1, 768)


@pytest.mark.sdxl
def test_sdxl_fills_both_text_encoders_and_the_pooled_output(comfy_in_process):
    graph = style_graph("sdxl")
    graph["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": f"{PROMPT_BEFORE} sks{PROMPT_AFTER}", "clip": ["1", 1]}}
    out = comfy_in_process.run(graph, outputs_of=("4", "5", "6"))
    tokens = out["4"][0].tokens
    assert tokens["clip_l"].shape == (1, 8, 768) and tokens["clip_g"].shape == (1, 8, 1280)
    (cond, extra), = out["5"][0]
    (plain, plain_extra), = out["6"][0]
    assert cond.shape == (1, 77, 2048) and extra["pooled_output"].shape == (1, 1280)
    assert not torch.equal(cond[..., :768], plain[..., :768]) and not torch.equal(cond[..., 768:], plain[..., 768:])
    assert not torch.equal(extra["pooled_output"], plain_extra["pooled_output"])


def test_injection_equals_a_reference_straight_through_the_text_encoder(sd15):
    """Independent reference: Hugging Face's CLIPTextModel with the clip_l weights, placeholder rows swapped."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    text_encoder = sd15["clip"].cond_stage_model.clip_l.transformer
    weights = {k[len("text_model."):]: v.float() for k, v in text_encoder.state_dict().items() if k.startswith("text_model.")}
    config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                            num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu")
    config._attn_implementation = "eager"
    model = CLIPTextModel(config).eval()
    model.load_state_dict(weights, strict=True)
    tokenizer = CLIPTokenizer.from_pretrained(str(comfyui_dir() / "comfy" / "sd1_tokenizer"))
    before = tokenizer(PROMPT_BEFORE, add_special_tokens=False).input_ids
    after = tokenizer(PROMPT_AFTER, add_special_tokens=False).input_ids
    ids = [tokenizer.bos_token_id, *before, *[0] * 8, *after, tokenizer.eos_token_id]
    ids += [tokenizer.eos_token_id] * (77 - len(ids))
    with torch.no_grad():
        embeds = model.embeddings.token_embedding(torch.tensor([ids]))
        embeds[0, 1 + len(before):1 + len(before) + 8] = sd15["tokens"].tokens["clip_l"][0]
        hidden = model.embeddings(inputs_embeds=embeds)
        causal = torch.full((77, 77), float("-inf")).triu(1)[None, None]
        for layer in model.encoder.layers:
            hidden = layer(hidden, causal)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        reference = model.final_layer_norm(hidden)
    node = sd15["cond"][0][0]
    assert reference.abs().max() > 0.1
    assert (node - reference).abs().max() <= 1e-6


@pytest.mark.parametrize("family", ["sd15", pytest.param("sdxl", marks=pytest.mark.sdxl)])
def test_exported_embedding_in_a_stock_clip_text_encode_equals_the_node(family, comfy_in_process):
    name = f"test_export_{family}"
    export = style_graph(family)
    export["6"] = {"class_type": "StyleSmithSaveStyleEmbedding", "inputs": {"style_tokens": ["4", 0], "name": name}}
    saved = comfy_in_process.run(export, outputs_of=("6",))
    assert saved["6"][0] == f"embedding:{name}"
    graph = style_graph(family)
    graph["6"] = {"class_type": "CLIPTextEncode",
                  "inputs": {"text": f"{PROMPT_BEFORE} embedding:{name}{PROMPT_AFTER}", "clip": ["1", 1]}}
    out = comfy_in_process.run(graph, outputs_of=("5", "6"))
    (ours, our_extra), = out["5"][0]
    (stock, stock_extra), = out["6"][0]
    assert ours.shape == stock.shape
    assert (ours - stock).abs().max() <= 1e-6
    assert (our_extra["pooled_output"] - stock_extra["pooled_output"]).abs().max() <= 1e-6


def test_batch_modes_and_placeholder_free_prompts(comfy_in_process):
    graph = style_graph("sd15", text="a photo of a cat")
    graph["3"] = {"class_type": "EmptyImage", "inputs": {"width": 50, "height": 30, "batch_size": 3, "color": 0x884422}}
    graph["7"] = {"class_type": "ImageInvert", "inputs": {"image": ["3", 0]}}
    graph["8"] = {"class_type": "ImageBatch", "inputs": {"image1": ["3", 0], "image2": ["7", 0]}}
    graph["4"]["inputs"]["image"] = ["8", 0]
    per_image = comfy_in_process.run(graph, outputs_of=("4", "5"))
    assert per_image["4"][0].tokens["clip_l"].shape == (6, 8, 768)
    assert per_image["5"][0][0][0].shape == (6, 77, 768)
    graph["4"]["inputs"]["batch_mode"] = "average"
    averaged = comfy_in_process.run(graph, outputs_of=("4",))["4"][0].tokens["clip_l"]
    assert torch.allclose(averaged[0], per_image["4"][0].tokens["clip_l"].mean(0), atol=1e-6)


def test_nodes_do_not_mutate_clip_or_conditioning(comfy_in_process, sd15):
    graph = style_graph("sd15")
    graph["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a red boat", "clip": ["1", 1]}}
    # A LoRA clone of the same CLIP encodes first, as in a full run where other tests patch this checkpoint: ComfyUI
    # patches the weights all clones share in place, and restores them only when an unpatched clone loads.
    graph["7"] = {"class_type": "StyleSmithStyleForgeLoraLoader", "inputs": {
        "model": ["1", 0], "clip": ["1", 1], "lora_name": DEFAULT_LORA, "strength_model": 1.0, "strength_clip": 1.0}}
    graph["8"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a red boat", "clip": ["7", 1]}}
    conditioning = comfy_in_process.run(graph, outputs_of=("6", "8"))["6"][0]
    clip, tokens = sd15["clip"], sd15["tokens"]
    conditioning_before = copy.deepcopy(conditioning)
    tokens_before = {k: v.clone() for k, v in tokens.tokens.items()}
    clip.load_model()   # the shared weights as this clone sees them, not as the LoRA clone left them
    clip_before = {k: v.clone() for k, v in clip.cond_stage_model.state_dict().items()}
    patches_before = dict(clip.patcher.patches)
    nodes = comfy_in_process.node_classes
    nodes["StyleSmithEncodePromptWithStyle"].execute(clip=clip, style_tokens=tokens, text="a boat, sks", placeholder="sks")
    joined = nodes["StyleSmithConcatStyle"].execute(conditioning=conditioning, strength=0.5, style_tokens=tokens,
                                                    clip=clip)[0]
    (cond, extra), = conditioning
    (cond0, extra0), = conditioning_before
    assert torch.equal(cond, cond0) and extra.keys() == extra0.keys()
    assert all(torch.equal(extra[k], extra0[k]) for k in extra if torch.is_tensor(extra[k]))
    assert all(torch.equal(tokens.tokens[k], tokens_before[k]) for k in tokens_before)
    clip.load_model()
    # SD1.x never uses clip_l's text_projection, so ComfyUI leaves it as uninitialised memory, NaN bits included.
    torch.testing.assert_close(clip.cond_stage_model.state_dict(), clip_before, rtol=0, atol=0, equal_nan=True)
    assert dict(clip.patcher.patches) == patches_before
    (joined_cond, joined_extra), = joined
    assert joined_cond.shape == (1, 77 + 77, 768)
    assert torch.equal(joined_cond[:, :77], cond) and torch.equal(joined_extra["pooled_output"], extra["pooled_output"])
    assert joined_extra is not extra


def test_concat_strength_scales_the_appended_style(comfy_in_process):
    graph = style_graph("sd15")
    graph["6"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a red boat", "clip": ["1", 1]}}
    graph["7"] = {"class_type": "StyleSmithConcatStyle",
                  "inputs": {"conditioning": ["6", 0], "strength": 1.0, "style_tokens": ["4", 0], "clip": ["1", 1]}}
    graph["8"] = {"class_type": "StyleSmithConcatStyle",
                  "inputs": {"conditioning": ["6", 0], "strength": 0.25, "style_conditioning": ["7", 0]}}
    out = comfy_in_process.run(graph, outputs_of=("7", "8"))
    full, quarter = out["7"][0][0][0], out["8"][0][0][0]
    assert quarter.shape == (1, 77 * 3, 768)
    assert torch.allclose(quarter[:, 77:], 0.25 * full, atol=1e-6)


def test_requeue_reuses_the_encoder_and_a_new_prompt_reruns_only_the_prompt(comfy_in_process):
    comfy_in_process.run(style_graph("sd15", text="a boat, sks"), outputs_of=("5",))
    comfy_in_process.run(style_graph("sd15", text="a boat, sks"), outputs_of=("5",))
    assert {"2", "4", "5"} <= comfy_in_process.cached_nodes()
    comfy_in_process.run(style_graph("sd15", text="a tree, sks"), outputs_of=("5",))
    cached = comfy_in_process.cached_nodes()
    assert {"2", "4"} <= cached and "5" not in cached


def node_error(comfy_in_process, graph, outputs_of=("5",)) -> str:
    with pytest.raises(NodeExecutionError) as excinfo:
        comfy_in_process.run(graph, outputs_of=outputs_of)
    return str(excinfo.value)


def test_a_head_serves_every_clip_with_its_text_encoder(comfy_in_process, sd15):
    """The SDXL encoder's clip_l head fits SD1.x's clip_l: on an SD1.x CLIP its tokens encode exactly as stock
    `embedding:` does with the same vectors (ComfyUI's SD1 tokenizer reads the file's clip_l key), clip_g unused."""
    name = "test_head_per_text_encoder"
    export = style_graph("sd15", encoder_family="sdxl")
    export["6"] = {"class_type": "StyleSmithSaveStyleEmbedding", "inputs": {"style_tokens": ["4", 0], "name": name}}
    comfy_in_process.run(export, outputs_of=("6",))
    graph = style_graph("sd15", encoder_family="sdxl")
    graph["7"] = {"class_type": "CLIPTextEncode",
                  "inputs": {"text": f"{PROMPT_BEFORE} embedding:{name}{PROMPT_AFTER}", "clip": ["1", 1]}}
    out = comfy_in_process.run(graph, outputs_of=("4", "5", "7"))
    assert set(out["4"][0].widths()) == {"clip_l", "clip_g"}
    (ours, _), = out["5"][0]
    (stock, _), = out["7"][0]
    assert ours.shape == (1, 77, 768) and (ours - stock).abs().max() <= 1e-6
    assert not torch.equal(ours, sd15["cond"][0][0])


@pytest.mark.sdxl
def test_sd1_encoder_on_an_sdxl_clip_names_both_families_and_widths(comfy_in_process):
    message = node_error(comfy_in_process, style_graph("sdxl", encoder_family="sd15"))
    assert "Token width mismatch" in message
    for part in ("are for SD1.x, with heads for clip_l (CLIP-L, 768)", "this CLIP is SDXL's",
                 "clip_g (CLIP-G, 1280)", "no head for clip_g.",
                 "Load a style encoder with clip_g and clip_l heads (trained for SDXL)",
                 "or use the CLIP of SD1.x."):
        assert part in message


def test_bad_encoder_files_are_refused_with_the_fix(comfy_in_process):
    folder = comfy_in_process.base_dir / "models" / "style_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pickled.pt").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    (folder / "empty.safetensors").write_bytes(b"")
    graph = style_graph("sd15")
    graph["2"]["inputs"]["encoder_name"] = "pickled.pt"
    assert "refuses to load it because loading a pickle can run code" in node_error(comfy_in_process, graph)
    graph["2"]["inputs"]["encoder_name"] = "empty.safetensors"
    assert "truncated or corrupt" in node_error(comfy_in_process, graph)


def test_empty_batches_nan_images_and_missing_styles_name_the_problem(comfy_in_process, sd15):
    classes = comfy_in_process.node_classes
    to_tokens = classes["StyleSmithImageToStyleTokens"]
    with pytest.raises(ValueError, match="IMAGE batch is empty"):
        to_tokens.execute(style_encoder=sd15["encoder"], image=torch.zeros(0, 8, 8, 3), batch_mode="per image")
    with pytest.raises(ValueError, match="NaN or inf"):
        to_tokens.execute(style_encoder=sd15["encoder"], image=torch.full((1, 8, 8, 3), float("nan")),
                          batch_mode="per image")
    concat = classes["StyleSmithConcatStyle"]
    with pytest.raises(ValueError, match="exactly one style"):
        concat.execute(conditioning=sd15["cond"], strength=1.0)
    with pytest.raises(ValueError, match="need the clip input"):
        concat.execute(conditioning=sd15["cond"], strength=1.0, style_tokens=sd15["tokens"])
    save = classes["StyleSmithSaveStyleEmbedding"]
    with pytest.raises(ValueError, match="not a usable embedding name"):
        save.execute(style_tokens=sd15["tokens"], name="../escape")


@pytest.mark.server
def test_server_reports_a_bad_encoder_and_serves_the_next_prompt(comfy_server):
    folder = comfy_server.base_dir / "models" / "style_encoders"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.safetensors").write_bytes(b"\x00" * 100)
    bad = copy.deepcopy(api_workflows()["style-tokens-sd15"])
    bad["2"]["inputs"]["encoder_name"] = "broken.safetensors"
    result = comfy_server.run(bad)
    assert result.status == "error" and "truncated or corrupt" in result.error["exception_message"]
    good = comfy_server.run(api_workflows()["style-tokens-sd15"])
    assert good.status == "success" and good.images


def test_image_to_style_tokens_honours_comfyuis_interrupt(comfy_in_process, sd15):
    import comfy.model_management
    to_tokens = comfy_in_process.node_classes["StyleSmithImageToStyleTokens"]
    comfy.model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(comfy.model_management.InterruptProcessingException):
            to_tokens.execute(style_encoder=sd15["encoder"], image=torch.rand(4, 16, 16, 3), batch_mode="per image")
    finally:
        comfy.model_management.interrupt_current_processing(False)
    tokens = to_tokens.execute(style_encoder=sd15["encoder"], image=torch.rand(4, 16, 16, 3), batch_mode="per image")
    assert tokens[0].batch_size == 4


def test_every_node_input_and_output_has_a_tooltip_and_every_node_a_description(object_info):
    ours = {name: info for name, info in object_info.items() if info["python_module"].endswith("ComfyUI-StyleSmith")}
    assert ours, "no StyleSmith node in /object_info"
    for name, info in ours.items():
        assert info["description"], f"{name} has no description"
        for section in ("required", "optional"):
            for input_name, spec in info["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
        assert all(info["output_tooltips"]), f"{name} has an output without a tooltip"
