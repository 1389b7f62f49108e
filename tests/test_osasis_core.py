"""OSASIS pure-torch parts: the mixing map over UNet levels, the style file, the SPN step."""
import itertools

import pytest
import torch

from core.families import FAMILIES
from core.osasis.decode import add_structure
from core.osasis.mixing import blend_contexts, block_style_weights, level_of, style_weights
from core.osasis.semantics import image_embedding_code
from core.formats.osasis_style_file import OsasisStyle, load_osasis_style, save_osasis_style
from core.formats.safe_files import WeightFileError
from core.osasis.spn import StructurePreservingNetwork


def test_mixing_goes_from_all_content_to_all_style_finest_levels_first():
    assert style_weights(0.0, 4) == [0.0] * 5
    assert style_weights(1.0, 4) == [1.0] * 5
    half = style_weights(0.5, 4)
    assert half[0] == 1.0 and half[-1] == 0.0, "halfway: style on the finest level, content in the middle block"
    for mix in (0.1, 0.3, 0.5, 0.7, 0.9):
        weights = style_weights(mix, 3)
        assert all(a >= b for a, b in itertools.pairwise(weights)), weights
        assert all(a <= b for a, b in zip(weights, style_weights(min(1.0, mix + 0.1), 3)))
    with pytest.raises(ValueError, match=r"mix must be in \[0, 1\]"):
        style_weights(1.5, 4)


def test_block_weights_give_the_style_the_last_blocks_first():
    assert block_style_weights(0.0, 4) == [0.0] * 4 and block_style_weights(1.0, 4) == [1.0] * 4
    assert block_style_weights(0.5, 4) == [0.0, 0.0, 1.0, 1.0]
    assert block_style_weights(0.375, 4) == [0.0, 0.0, 0.5, 1.0]
    assert block_style_weights(0.5, 2) == [0.0, 1.0]


def test_level_of_an_attention_layer_follows_its_token_count():
    assert [level_of(64 * 64 // 4 ** k, 64, 64, 4) for k in range(4)] == [0, 1, 2, 3]
    assert level_of(16 * 24, 16, 24, 3) == 0 and level_of(4 * 6, 16, 24, 3) == 2
    assert level_of(1, 64, 64, 3) == 2, "clamped to the coarsest level"


def test_blend_broadcasts_the_style_and_refuses_mismatched_codes():
    content, style = torch.zeros(2, 77, 8), torch.ones(1, 77, 8)
    assert torch.equal(blend_contexts(content, style, 0.25), torch.full((2, 77, 8), 0.25))
    assert blend_contexts(content, style, 0.0) is content
    with pytest.raises(ValueError, match="z_content has 77 tokens of width 8 but z_style has 154"):
        blend_contexts(content, torch.ones(1, 154, 8), 0.5)


def test_spn_step_at_weight_zero_is_the_identity():
    spn = StructurePreservingNetwork()
    torch.nn.init.normal_(spn.conv_out.weight, std=0.5)
    x, clean = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert torch.equal(add_structure(x, spn, clean, torch.tensor(500.0), 0.0), x)
    moved = add_structure(x, spn, clean, torch.tensor(500.0), 0.1)
    assert torch.allclose(moved - x, 0.1 * spn(clean, torch.full((2,), 500.0)), atol=1e-6)


def style_file(tmp_path, **changes):
    torch.manual_seed(0)
    spn = StructurePreservingNetwork(width=16, time_dim=32, groups=4)
    torch.nn.init.normal_(spn.conv_out.weight)
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(32, 4),
            "lora_unet_down_blocks_0_attentions_0_proj_in.alpha": torch.tensor(4.0)}
    fields = dict(lora=lora, spn=spn, family="sd15", t0=0.5, steps=50, scheduler="normal", spn_weight=0.1,
                  semantic={"source": "prompt", "prompt": "a picture"}, reference={"style": "s.png"},
                  thumbnails={"style": torch.randint(0, 255, (8, 8, 3), dtype=torch.uint8)},
                  base_checkpoint="x.safetensors", training={"steps": 3})
    fields.update(changes)
    path = tmp_path / "style.safetensors"
    save_osasis_style(OsasisStyle(**fields), path)
    return path, OsasisStyle(**fields)


def test_style_file_round_trip(tmp_path):
    path, style = style_file(tmp_path)
    loaded = load_osasis_style(path)
    assert set(loaded.lora) == set(style.lora) and all(torch.equal(loaded.lora[k], v) for k, v in style.lora.items())
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(loaded.spn(x, torch.tensor([3.0])), style.spn(x, torch.tensor([3.0])))
    assert (loaded.family, loaded.t0, loaded.steps, loaded.scheduler, loaded.spn_weight) == ("sd15", 0.5, 50, "normal", 0.1)
    assert loaded.semantic == style.semantic and loaded.reference == style.reference
    assert torch.equal(loaded.thumbnails["style"], style.thumbnails["style"])
    assert not list(tmp_path.glob(".*partial"))


def test_foreign_damaged_and_missing_style_files_name_the_fix(tmp_path):
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(1)}, str(tmp_path / "lora.safetensors"), metadata={"ss_network_dim": "4"})
    with pytest.raises(WeightFileError, match="is not an OSASIS style .*put them in models/osasis"):
        load_osasis_style(tmp_path / "lora.safetensors")
    path, _ = style_file(tmp_path)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "spn.conv_out.bias"}
        metadata = f.metadata()
    save_file(tensors, str(tmp_path / "damaged.safetensors"), metadata=metadata)
    with pytest.raises(WeightFileError, match="structure-preserving network's tensors do not match"):
        load_osasis_style(tmp_path / "damaged.safetensors")
    with pytest.raises(WeightFileError, match="does not exist"):
        load_osasis_style(tmp_path / "nope.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(path.read_bytes()[:200])
    with pytest.raises(WeightFileError, match="truncated or corrupt"):
        load_osasis_style(tmp_path / "cut.safetensors")


def test_an_image_embedding_fills_the_slots_of_the_text_encoders_as_wide_as_it():
    vit_l, vit_big_g = torch.randn(2, 768), torch.randn(2, 1280)
    context, pooled = image_embedding_code(vit_l, FAMILIES["sd15"])
    assert context.shape == (2, 1, 768) and torch.equal(context[:, 0], vit_l) and torch.equal(pooled, vit_l)
    context, pooled = image_embedding_code(vit_l, FAMILIES["sdxl"])
    assert context.shape == (2, 1, 2048) and torch.equal(context[:, 0, :768], vit_l)
    assert not context[:, 0, 768:].any() and pooled.shape == (2, 1280) and not pooled.any()
    context, pooled = image_embedding_code(vit_big_g, FAMILIES["sdxl"])
    assert not context[:, 0, :768].any() and torch.equal(context[:, 0, 768:], vit_big_g)
    assert torch.equal(pooled, vit_big_g), "clip_g's pooled output is SDXL's pooled conditioning"
    with pytest.raises(ValueError, match=r"1024-wide image embeddings but SDXL's text encoders are clip_l 768, clip_g "
                                         r"1280 wide.*\(ViT-L/14, 768 or ViT-bigG/14, 1280\), or a style encoder"):
        image_embedding_code(torch.randn(1, 1024), FAMILIES["sdxl"])
    with pytest.raises(ValueError, match=r"\(ViT-L/14, 768\)"):
        image_embedding_code(vit_big_g, FAMILIES["sd15"])
    for family in ("klein", "zimage"):
        with pytest.raises(ValueError, match=f"{FAMILIES[family].display_name} encodes text with Qwen3-4B, an LLM: no "
                                             "CLIP image embedding.*a style encoder with a qwen3_4b head"):
            image_embedding_code(torch.randn(1, 2560), FAMILIES[family])
