"""Pure core of the style tokens: preprocessing, injection layout, file format, CLIP-vision import."""
import json
import pickle

import pytest
import torch

from core.formats.clip_vision_import import style_encoder_from_clip_vision, style_encoder_from_clip_vision_file
from core.data.image_preprocess import Preprocess, preprocess
from core.formats.safe_files import WeightFileError, read_safetensors
from core.formats.style_encoder_file import load_style_encoder, save_style_encoder
from core.style_tokens.tokens import StyleTokens
from core.style_tokens.injection import SpecialTokens, chunk_words, inject_style, reference_placeholders
from devkit.tiny_style_encoders import build_style_encoder

SPECIAL = SpecialTokens(start=49406, end=49407, pad=49407)
PLACEHOLDER = [48136]


def prompt_chunks(*words: list[int], max_length: int = 77):
    return chunk_words([[(t, 1.0, 0) for t in w] for w in words], SPECIAL, max_length)


# ---- preprocessing ---------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(2, 40, 90, 3), (1, 1, 1, 3), (1, 300, 200, 1), (1, 64, 64, 4), (3, 2000, 20, 3)])
def test_preprocess_takes_any_size_and_channel_count(shape):
    spec = Preprocess(size=32, mean=(0.5,) * 3, std=(0.5,) * 3)
    out = preprocess(torch.rand(shape), spec)
    assert out.shape == (shape[0], 3, 32, 32)
    assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1


def test_preprocess_uses_the_checkpoints_normalisation():
    grey = torch.full((1, 16, 16, 3), 0.5)
    authors = preprocess(grey, Preprocess(16, (0.5,) * 3, (0.5,) * 3))
    clip = preprocess(grey, Preprocess(16, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)))
    assert authors.abs().max() == 0
    assert torch.allclose(clip[0, :, 0, 0], torch.tensor([0.0690, 0.1615, 0.3330]), atol=1e-3)


def test_preprocess_gray_equals_rgb_and_alpha_is_dropped():
    spec = Preprocess(8, (0.5,) * 3, (0.5,) * 3)
    gray = torch.rand(1, 8, 8, 1)
    rgba = torch.cat([gray.expand(-1, -1, -1, 3), torch.zeros(1, 8, 8, 1)], dim=-1)
    assert torch.equal(preprocess(gray, spec), preprocess(rgba, spec))


def test_preprocess_errors_name_the_problem():
    spec = Preprocess(8, (0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="empty"):
        preprocess(torch.rand(0, 8, 8, 3), spec)
    with pytest.raises(ValueError, match="2 channels"):
        preprocess(torch.rand(1, 8, 8, 2), spec)


# ---- injection layout ------------------------------------------------------------------------
def test_placeholder_is_replaced_in_place_and_the_rest_shifts_right():
    style = torch.randn(8, 4)
    chunks = prompt_chunks([10, 11, 12], PLACEHOLDER, [13, 14])
    out, replaced = inject_style(chunks, PLACEHOLDER, style, SPECIAL)
    assert replaced == 1 and len(out) == 1 and len(out[0]) == 77
    ids = [e[0] if isinstance(e[0], int) else "V" for e in out[0]]
    assert ids[:15] == [49406, 10, 11, 12] + ["V"] * 8 + [13, 14, 49407]
    assert all(t == 49407 for t in ids[15:])
    assert all(torch.equal(out[0][4 + i][0], style[i]) for i in range(8))


def test_no_placeholder_appends_the_style_and_each_occurrence_is_replaced():
    style = torch.randn(8, 4)
    appended, replaced = inject_style(prompt_chunks([10, 11]), PLACEHOLDER, style, SPECIAL)
    assert replaced == 0
    assert [e[0] for e in appended[0][:3]] == [49406, 10, 11] and torch.equal(appended[0][10][0], style[7])
    twice, replaced = inject_style(prompt_chunks(PLACEHOLDER, [10], PLACEHOLDER), PLACEHOLDER, style, SPECIAL)
    assert replaced == 2 and sum(not isinstance(e[0], int) for e in twice[0]) == 16


@pytest.mark.parametrize("text, expected", [
    ("a cat in the style of sks, at night", ("a cat in the style of embedding:N, at night", 1)),
    ("in the style of sks", ("in the style of embedding:N", 1)),
    ("sks style\nsks", ("embedding:N style\nembedding:N", 2)),
    ("(sks). sksfoo", ("( embedding:N ). sksfoo", 1)),
    ("a cat", ("a cat embedding:N", 0)),
    ("", ("embedding:N", 0)),
])
def test_llm_prompts_name_the_style_where_comfyui_reads_an_embedding(text, expected):
    """Where ComfyUI's `embedding:` reading finds the reference: after whitespace, ended by whitespace or commas."""
    assert reference_placeholders(text, "sks", "embedding:N") == expected


def test_long_prompts_spill_into_a_second_chunk_like_comfyui():
    words = [[100 + i] for i in range(70)]
    out, _ = inject_style(prompt_chunks(*words[:60], PLACEHOLDER, *words[60:]), PLACEHOLDER, torch.randn(8, 4), SPECIAL)
    assert len(out) == 2 and all(len(c) == 77 for c in out)
    assert out[0][0][0] == 49406 and out[0][-1][0] == 49407 and out[1][0][0] == 49406
    flat = [e for c in out for e in c if e[2] != 0]
    assert len(flat) == 70 + 8


def test_style_tokens_refuse_nan_and_mismatched_batches():
    with pytest.raises(ValueError, match="NaN or inf"):
        StyleTokens({"clip_l": torch.tensor([[[float("nan")] * 4]])}, "sd15")
    with pytest.raises(ValueError, match="disagree"):
        StyleTokens({"clip_l": torch.zeros(2, 8, 4), "clip_g": torch.zeros(1, 8, 6)}, "sdxl")


# ---- the style-encoder file ------------------------------------------------------------------
def test_style_encoder_file_round_trip(tmp_path):
    encoder = build_style_encoder("sdxl", seed=5)
    path = tmp_path / "enc.safetensors"
    save_style_encoder(encoder, path)
    loaded = load_style_encoder(path)
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = encoder(pixels), loaded(pixels)
    assert set(a) == {"clip_l", "clip_g"}
    assert a["clip_l"].shape == (2, 8, 768) and a["clip_g"].shape == (2, 8, 1280)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config.preprocess == encoder.config.preprocess
    assert not list(tmp_path.glob(".*partial"))


def test_a_qwen3_4b_head_is_one_more_head_in_format_1(tmp_path):
    """The Klein encoder's head is keyed by Qwen3-4B's embedding key, 2560 wide; the file stays format 1."""
    from safetensors import safe_open
    encoder = build_style_encoder("klein", seed=5)
    path = tmp_path / "enc.safetensors"
    save_style_encoder(encoder, path)
    with safe_open(str(path), framework="pt") as f:
        metadata, names = f.metadata(), set(f.keys())
    assert metadata["stylesmith.format_version"] == "1"
    assert json.loads(metadata["stylesmith.heads"]) == {"qwen3_4b": 2560}
    assert {"heads.qwen3_4b.weight", "heads.qwen3_4b.bias"} <= names
    loaded = load_style_encoder(path)
    with torch.no_grad():
        tokens = loaded(torch.randn(2, 3, 64, 64))
    assert set(tokens) == {"qwen3_4b"} and tokens["qwen3_4b"].shape == (2, 8, 2560)
    assert 0.005 < tokens["qwen3_4b"].std() < 0.05, "tokens spread like the encoder's own token embeddings"


def test_pickle_is_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "code-ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    for name in ("evil.pt", "evil.safetensors"):
        (tmp_path / name).write_bytes(pickle.dumps(Evil()))
        with pytest.raises(WeightFileError, match="pickle"):
            load_style_encoder(tmp_path / name)
    assert not marker.exists()


def test_safetensors_whose_header_length_starts_like_a_pickle_still_loads(tmp_path):
    """The header length is little-endian, so its first byte is 0x80 (a pickle's magic) for 1 in 256 files."""
    from safetensors.torch import save_file
    for padding in range(256):
        path = tmp_path / "x.safetensors"
        save_file({"x": torch.arange(3.0)}, str(path), metadata={"pad": "p" * padding})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no metadata length gave a header length with low byte 0x80")
    tensors, metadata = read_safetensors(path, "test")
    assert torch.equal(tensors["x"], torch.arange(3.0)) and metadata["pad"] == "p" * padding


def test_truncated_missing_and_foreign_files_name_the_fix(tmp_path):
    path = tmp_path / "enc.safetensors"
    save_style_encoder(build_style_encoder("sd15", seed=1), path)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        load_style_encoder(truncated)
    with pytest.raises(WeightFileError, match="does not exist"):
        load_style_encoder(tmp_path / "nope.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "lora.safetensors"), metadata={"ss_network_dim": "4"})
    with pytest.raises(WeightFileError, match="not a StyleSmith style encoder"):
        load_style_encoder(tmp_path / "lora.safetensors")


# ---- CLIP-vision weights users already have ---------------------------------------------------
@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_clip_vision_weights_map_onto_the_backbone(act):
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2,
                              image_size=64, patch_size=16, projection_dim=32, hidden_act=act)
    torch.manual_seed(0)
    hf = CLIPVisionModelWithProjection(config).eval()
    encoder = style_encoder_from_clip_vision(hf.state_dict(), "sd15", {"clip_l": 768}, heads=2,
                                             quick_gelu=act == "quick_gelu").eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = hf.vision_model(pixel_values=pixels).pooler_output
        ours = encoder.features(pixels)
    assert (reference - ours).abs().max() < 1e-5
    assert encoder(pixels)["clip_l"].shape == (2, 8, 768)
    assert json.loads(json.dumps(encoder.config.backbone_config))["vision_cfg"]["width"] == 64


def test_a_clip_vision_file_starts_an_encoder_with_comfyuis_head_count(tmp_path):
    """The file path takes ComfyUI's clip_vision defaults: 16 heads, GELU unless 24 layers; a pickle is refused."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=16,
                              image_size=32, patch_size=16, projection_dim=32, hidden_act="gelu")
    torch.manual_seed(1)
    hf = CLIPVisionModelWithProjection(config).eval()
    path = tmp_path / "clip_vision.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    encoder = style_encoder_from_clip_vision_file(path, "sdxl", {"clip_l": 768, "clip_g": 1280}, n_tokens=4).eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert (hf.vision_model(pixel_values=pixels).pooler_output - encoder.features(pixels)).abs().max() < 1e-5
        assert encoder(pixels)["clip_g"].shape == (1, 4, 1280)
    torch.save(hf.state_dict(), tmp_path / "clip_vision.bin")
    with pytest.raises(WeightFileError, match="pickle"):
        style_encoder_from_clip_vision_file(tmp_path / "clip_vision.bin", "sdxl", {"clip_l": 768})
