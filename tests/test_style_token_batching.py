"""Style tokens: captions of any length, and a batch that is one text-encoder pass and one UNet pass whose rows are
each image's one-image loss (SD1.x and SDXL)."""
import json

import pytest
import torch

from core.data.style_dataset import read_style_dataset
from core.data.synthetic_styles import write_synthetic_style_set
from core.formats.token_shards import read_index
from trainers.style_tokens import stage1

SHORT = "a red boat, in the style of sks"
# about 140 CLIP tokens: two 77-token chunks
LONG = ("a quiet harbour at dawn with " + ", ".join(f"a small {c} boat moored beside a wooden pier" for c in (
    "red", "blue", "green", "yellow", "white", "black", "grey", "orange", "purple", "brown", "pink", "golden"))
    + ", in the style of sks")
# LONG with one word changed in its second chunk
LONG_OTHER_TAIL = LONG.replace("a small pink boat", "a small pink house")


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def diffusion(request, tiny_checkpoint):
    from comfy_adapter.diffusion import ComfyDiffusion
    model = ComfyDiffusion(tiny_checkpoint(request.param), torch.device("cpu"))
    model.allow_text_encoder_gradients()
    return model


def tokens_for(diffusion, count: int) -> dict:
    from comfy_adapter.families import text_encoder_widths
    return stage1.init_tokens([f"image{i}" for i in range(count)], text_encoder_widths(diffusion.clip), 8, 0.02, 0)


def latents_for(count: int) -> torch.Tensor:
    return torch.randn(count, 4, 8, 8, generator=torch.Generator().manual_seed(7))


def generators(seeds) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_a_batch_encodes_as_each_caption_alone(diffusion):
    """One text-encoder pass for the batch: every row's cond (repeated to the batch's length) and pooled output
    are those of its caption encoded alone."""
    from comfy_adapter.batch_conditioning import encode_prompts_with_style, join_conditionings
    from comfy_adapter.diffusion import encode_prompt_with_style
    tokens, texts = tokens_for(diffusion, 3), [SHORT, LONG, "sks"]
    with torch.no_grad():
        conds, pooled = encode_prompts_with_style(diffusion, texts, tokens, "sks")
        cond = join_conditionings(conds)
        alone = [encode_prompt_with_style(diffusion, t, {k: v[i] for k, v in tokens.items()}, "sks")
                 for i, t in enumerate(texts)]
    assert [c.shape[1] for c, _ in alone] == [77, 154, 77] and cond.shape[:2] == (3, 154)
    for i, (row_cond, row_pooled) in enumerate(alone):
        assert torch.allclose(cond[i], row_cond[0].repeat(154 // row_cond.shape[1], 1), atol=1e-5, rtol=1e-5)
        assert torch.allclose(pooled[i], row_pooled[0], atol=1e-5, rtol=1e-5)
    assert (pooled[0] - pooled[1]).abs().max() > 1e-3, "rows have their own pooled outputs"


def test_batch_loss_rows_are_the_one_image_losses_for_long_and_short_captions(diffusion):
    """The batch that stopped stage 1 (one caption past 77 tokens, one short): one UNet pass, and each row's loss is
    the loss of that image trained alone. The second chunk reaches the loss: the sampler sees it too."""
    tokens, latents = tokens_for(diffusion, 2), latents_for(2)
    with torch.no_grad():
        batched = stage1.batch_loss(diffusion, latents, [LONG, SHORT], tokens, "sks", generators([11, 12]))
        alone = [stage1.batch_loss(diffusion, latents[i:i + 1], [text], {k: v[i:i + 1] for k, v in tokens.items()},
                                   "sks", generators([seed]))
                 for i, (text, seed) in enumerate(((LONG, 11), (SHORT, 12)))]
        other_tail = stage1.batch_loss(diffusion, latents[:1], [LONG_OTHER_TAIL], {k: v[:1] for k, v in tokens.items()},
                                       "sks", generators([11]))
    assert torch.allclose(batched, torch.cat(alone), rtol=1e-5, atol=1e-7), (batched, alone)
    assert abs(other_tail.item() - alone[0].item()) > 1e-6 * alone[0].item(), "words past token 77 condition the UNet"


def test_stages_1_and_3_run_the_text_encoder_and_the_unet_once_per_batch(diffusion):
    """Three images of three chunk counts: each text encoder and the UNet run once, for stage 1 and for stage 3."""
    from comfy.sd1_clip import ClipTokenWeightEncoder
    from core.data.image_preprocess import preprocess
    from devkit.tiny_style_encoders import build_style_encoder
    from trainers.style_tokens import stage3
    counted = [diffusion.unet_module] + [m for m in diffusion.text_encoder_module.modules()
                                         if isinstance(m, ClipTokenWeightEncoder)]
    calls = [0] * len(counted)
    handles = [m.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1)) for i, m in enumerate(counted)]
    texts, latents = [LONG, SHORT, LONG + " " + LONG], latents_for(3)
    encoder = build_style_encoder(diffusion.family, seed=0).eval()
    pixels = preprocess(torch.rand(3, 64, 64, 3, generator=torch.Generator().manual_seed(0)), encoder.config.preprocess)
    try:
        with torch.no_grad():
            stage1.batch_loss(diffusion, latents, texts, tokens_for(diffusion, 3), "sks", generators([1, 2, 3]))
            after_stage1 = list(calls)
            stage3.style_loss(diffusion, encoder, pixels, latents, texts, "sks", torch.Generator().manual_seed(0))
    finally:
        for handle in handles:
            handle.remove()
    assert len(counted) == {"sd15": 2, "sdxl": 3}[diffusion.family]
    assert after_stage1 == [1] * len(counted) and calls == [2] * len(counted), (after_stage1, calls)


def test_stage1_trains_a_batch_of_mixed_caption_lengths(tiny_checkpoint, tmp_path):
    manifest = write_synthetic_style_set(tmp_path / "data", styles=2, contents=1, size=64, seed=1)
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    records[0]["caption"] = LONG
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    index = stage1.train(stage1.parse_args(["--checkpoint", str(tiny_checkpoint("sd15")), "--data", str(manifest),
                                            "--output-dir", str(tmp_path / "out"), "--resolution", "64", "--steps", "2",
                                            "--batch-size", "2", "--sample-steps", "0", "--workers", "0"]))
    assert sorted(index) == sorted(e.id for e in read_style_dataset(manifest).examples)
    assert {r["caption"] for r in read_index(tmp_path / "out").values()} == {LONG, records[1]["caption"]}
