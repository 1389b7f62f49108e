"""Style tokens on Flux.2 Klein 4B and Z-Image (Qwen3-4B, a chat template): Prompt with Style Tokens equals stock
`embedding:` with the same vectors exactly, inside the template; Concat Style and Save Style as Embedding; a head for
another text encoder is refused naming both. Only the shared tiny text encoder loads here, never Z-Image's 0.9B
diffusion model."""
import pytest
import torch
from safetensors import safe_open

from devkit.example_inputs import STYLE_REFERENCE
from devkit.in_process import NodeExecutionError
from devkit.tiny_dit_models import SPLIT_MODELS
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from core.families import FAMILIES
from core.formats.embedding_file import read_embedding
from comfy_adapter.families import text_encoder_tokenizers

pytestmark = pytest.mark.hosts

FAMILY_PARAMS = [pytest.param("klein", marks=pytest.mark.family("klein")),
                 pytest.param("zimage", marks=pytest.mark.family("zimage"))]
# A placeholder mid-prompt (followed by a comma) and at the prompt's end (followed by the chat template).
PROMPTS = ["a photo of a cat in the style of sks, at night", "a lighthouse on a cliff, in the style of sks"]


def clip_loader(family: str) -> dict:
    return {"class_type": "CLIPLoader", "inputs": {"clip_name": SPLIT_MODELS[family].text_encoder,
                                                  "type": FAMILIES[family].comfy_clip_type}}


def style_graph(family: str, text: str, encoder: str | None = None) -> dict:
    return {
        "1": clip_loader(family),
        "2": {"class_type": "StyleSmithStyleEncoderLoader",
              "inputs": {"encoder_name": encoder or DEFAULT_STYLE_ENCODERS[family]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": STYLE_REFERENCE}},
        "4": {"class_type": "StyleSmithImageToStyleTokens",
              "inputs": {"style_encoder": ["2", 0], "image": ["3", 0], "batch_mode": "per image"}},
        "5": {"class_type": "StyleSmithEncodePromptWithStyle",
              "inputs": {"clip": ["1", 0], "style_tokens": ["4", 0], "text": text, "placeholder": "sks"}},
    }


def reads_embeddings(comfy_in_process, family: str) -> bool:
    """Whether this host's stock tokenizer for the family reads `embedding:` (ComfyUI 0.3.75 builds Z-Image's
    without an embeddings folder, so stock `embedding:` does nothing there and our node refuses by name)."""
    clip = comfy_in_process.run(style_graph(family, ""), outputs_of=("1",))["1"][0]
    return all(t.embedding_directory is not None for t in text_encoder_tokenizers(clip).values())


def refused_for_want_of_embeddings(comfy_in_process, family: str) -> bool:
    """On a host whose tokenizer reads no embeddings: True once the node's error says so."""
    if reads_embeddings(comfy_in_process, family):
        return False
    assert "reads no `embedding:` and style tokens cannot reach" in node_error(comfy_in_process,
                                                                                style_graph(family, PROMPTS[0]))
    return True


def stock_encode(graph: dict, node: str, text: str) -> dict:
    graph[node] = {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 0]}}
    return graph


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_prompt_with_style_tokens_equals_stock_embedding_exactly(comfy_in_process, family):
    """The node's conditioning is bit-identical to stock CLIPTextEncode with `embedding:NAME` in the placeholder's
    place, NAME being the file Save Style as Embedding wrote (key qwen3_4b), for a placeholder mid-prompt, at the end
    and absent (tokens appended); the style changes the conditioning."""
    if refused_for_want_of_embeddings(comfy_in_process, family):
        return
    name = f"test_dit_style_{family}"
    export = style_graph(family, PROMPTS[0])
    export["6"] = {"class_type": "StyleSmithSaveStyleEmbedding",
                   "inputs": {"style_tokens": ["4", 0], "name": name, "overwrite": True}}
    saved = comfy_in_process.run(export, outputs_of=("4", "6"))
    assert saved["6"][0] == f"embedding:{name}"
    path = comfy_in_process.base_dir / "models" / "embeddings" / f"{name}.safetensors"
    with safe_open(str(path), "pt") as f:
        assert list(f.keys()) == ["qwen3_4b"]
    assert torch.equal(read_embedding(path)["qwen3_4b"], saved["4"][0].tokens["qwen3_4b"][0])
    cases = [(text, text.replace("sks", f"embedding:{name}")) for text in PROMPTS]
    cases.append(("a photo of a cat", f"a photo of a cat embedding:{name}"))
    for ours_text, stock_text in cases:
        graph = stock_encode(stock_encode(style_graph(family, ours_text), "6", stock_text), "7", ours_text)
        out = comfy_in_process.run(graph, outputs_of=("5", "6", "7"))
        (ours, _), = out["5"][0]
        (stock, _), = out["6"][0]
        (plain, _), = out["7"][0]
        assert ours.shape == stock.shape and ours.shape[-1] == FAMILIES[family].context_width, ours_text
        assert (ours - stock).abs().max().item() == 0, ours_text
        assert not torch.equal(ours[:, :plain.shape[1]], plain), ours_text
    if family == "klein":
        assert ours.shape[1] == 512, "Klein pads its prompt to 512 tokens"


@pytest.mark.family("klein")
def test_the_tokens_take_the_placeholders_place_inside_the_chat_template(comfy_in_process):
    """Independent of ComfyUI's `embedding:` reading: the token list is the template's start, the text before the
    placeholder, the 8 vectors themselves, then the text after it and the template's end."""
    from comfy_adapter.style_prompt import tokenize_with_style
    out = comfy_in_process.run(style_graph("klein", PROMPTS[0]), outputs_of=("1", "4"))
    clip, style = out["1"][0], out["4"][0].item(0)
    (chunk,) = tokenize_with_style(clip, PROMPTS[0], style, "sks")["qwen3_4b"]
    vector_at = [i for i, entry in enumerate(chunk) if torch.is_tensor(entry[0])]
    assert len(vector_at) == 8 and vector_at == list(range(vector_at[0], vector_at[0] + 8))
    assert all(chunk[i][0].data_ptr() == row.data_ptr() for i, row in zip(vector_at, style["qwen3_4b"])), \
        "the caller's own vectors (a trainer's keep their gradient)"
    decode = clip.tokenizer.qwen3_4b.tokenizer.decode
    before = decode([e[0] for e in chunk[:vector_at[0]]])
    after = decode([e[0] for e in chunk[vector_at[-1] + 1:] if e[0] != 151643])
    assert before == "<|im_start|>user\na photo of a cat in the style of "
    assert after.startswith(", at night<|im_end|>") and "<|im_start|>assistant" in after


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_concat_style_appends_the_encoded_style_rows(comfy_in_process, family):
    if refused_for_want_of_embeddings(comfy_in_process, family):
        return
    graph = stock_encode(style_graph(family, ""), "6", "a lighthouse on a cliff")
    graph["7"] = {"class_type": "StyleSmithConcatStyle", "inputs": {"conditioning": ["6", 0], "strength": 0.5,
                                                                    "style_tokens": ["4", 0], "clip": ["1", 0]}}
    out = comfy_in_process.run(graph, outputs_of=("5", "6", "7"))
    (style, _), = out["5"][0]
    (text, _), = out["6"][0]
    (joined, _), = out["7"][0]
    assert joined.shape == (1, text.shape[1] + style.shape[1], FAMILIES[family].context_width)
    assert torch.equal(joined[:, :text.shape[1]], text)
    assert torch.equal(joined[:, text.shape[1]:], style * 0.5)


def node_error(comfy_in_process, graph: dict) -> str:
    with pytest.raises(NodeExecutionError) as excinfo:
        comfy_in_process.run(graph, outputs_of=("5",))
    return str(excinfo.value)


@pytest.mark.family("klein")
def test_a_clip_l_head_on_klein_names_both_text_encoders(comfy_in_process):
    message = node_error(comfy_in_process, style_graph("klein", PROMPTS[0], encoder=DEFAULT_STYLE_ENCODERS["sd15"]))
    for part in ("heads for clip_l (CLIP-L, 768)", "this CLIP is Flux.2 Klein 4B's",
                 "qwen3_4b (Qwen3-4B, 2560)", "no head for qwen3_4b",
                 "a style encoder with a qwen3_4b head (trained for Flux.2 Klein 4B or Z-Image)",
                 "or use the CLIP of SD1.x."):
        assert part in message, message


@pytest.mark.sdxl
def test_a_qwen3_4b_head_on_an_sdxl_clip_names_both_text_encoders(comfy_in_process):
    graph = style_graph("klein", PROMPTS[0])
    graph["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_CHECKPOINTS["sdxl"]}}
    graph["5"]["inputs"]["clip"] = ["1", 1]
    message = node_error(comfy_in_process, graph)
    for part in ("heads for qwen3_4b (Qwen3-4B, 2560)", "this CLIP is SDXL's", "clip_l (CLIP-L, 768)",
                 "clip_g (CLIP-G, 1280)", "no head for clip_g, clip_l",
                 "a style encoder with clip_g and clip_l heads (trained for SDXL)",
                 "or use the CLIP of Flux.2 Klein 4B or Z-Image."):
        assert part in message, message


def test_the_callers_vectors_replace_the_loaded_ones_and_a_missing_placement_is_an_error():
    from comfy_adapter.style_prompt import _own_vectors
    style = torch.randn(2, 4, requires_grad=True)
    loaded = style.detach().clone()
    chunk = [(7, 1.0), (loaded[0], 1.0), (loaded[1], 1.0), (8, 1.0), (loaded[0], 1.0), (loaded[1], 1.0)]
    (placed,) = _own_vectors([chunk], style, 2, "qwen3_4b")
    assert [e[0] for e in placed[::3]] == [7, 8] and all(e[0].requires_grad for e in placed if torch.is_tensor(e[0]))
    with pytest.raises(RuntimeError, match="placed the style tokens 2 times in the qwen3_4b prompt, not 3"):
        _own_vectors([chunk], style, 3, "qwen3_4b")
