"""The bf16 lane: every trainer as a user runs it with --precision bf16, in its own process, where ComfyUI holds
the UNet, VAE and text encoder in bf16 through its own options (as on a GPU). Two steps each: the base really is
bf16, the losses are finite and the trained weights moved."""
import json
import math
import subprocess
import sys

import pytest
import torch

from core.formats.embedding_file import read_embedding
from core.formats.lora_file import read_lora
from core.formats.osasis_style_file import load_osasis_style
from core.formats.style_encoder_file import load_style_encoder
from core.data.synthetic_styles import write_synthetic_style_set
from core.formats.token_shards import load_tokens, read_index
from devkit.example_inputs import content_image, style_reference
from devkit.paths import REPO_ROOT
from trainers.style_tokens.stage1 import init_tokens

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BF16_BASE = "UNet bf16, text encoder bf16, VAE bf16"


def run_trainer(module: str, out, *argv) -> dict:
    """Run `python -m trainers.MODULE` with bf16 on the CPU; returns its run summary's facts."""
    done = subprocess.run([sys.executable, "-m", f"trainers.{module}", *map(str, argv), "--output-dir", str(out),
                           "--precision", "bf16", "--device", "cpu"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "run_summary.json").read_text())["facts"]


def losses_of(out) -> list[float]:
    history = json.loads(torch.load(out / "checkpoint.pt", weights_only=True)["history"])
    return [value for points in history.values() for _, value in points]


def assert_finite_and_moved(losses: list[float], moved: float) -> None:
    assert losses and all(math.isfinite(v) for v in losses), losses
    assert moved > 0, "the trained weights did not move"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bf16-data")
    manifest = write_synthetic_style_set(root / "styles", styles=2, contents=2, size=64, seed=0)
    for name, make in (("refs", lambda i: style_reference(64, seed=i)), ("aux", lambda i: content_image(64).rotate(20 * i))):
        (root / name).mkdir()
        for i in range(2):
            make(i).save(root / name / f"{i}.png")
    style_reference(64, seed=9).save(root / "style.png")
    return root, manifest


@pytest.fixture(scope="module")
def style_token_stages(tiny_checkpoint, data, tmp_path_factory):
    """Stages 1, 2 and 3 chained, each in bf16: (facts per stage, output folder per stage)."""
    root, manifest = data
    outs = {stage: tmp_path_factory.mktemp(stage) for stage in ("stage1", "stage2", "stage3")}
    common = ["--data", manifest, "--steps", 2]
    facts = {"stage1": run_trainer("style_tokens.stage1", outs["stage1"], "--checkpoint", tiny_checkpoint("sd15"),
                                   *common, "--resolution", 64, "--batch-size", 4, "--sample-steps", 0)}
    facts["stage2"] = run_trainer("style_tokens.stage2", outs["stage2"], *common, "--tokens", outs["stage1"],
                                  "--architecture", "StyleSmith-Tiny-ViT", "--random-init", "--batch-size", 2)
    facts["stage3"] = run_trainer("style_tokens.stage3", outs["stage3"], "--checkpoint", tiny_checkpoint("sd15"),
                                  *common, "--encoder", outs["stage2"] / "style_encoder.safetensors",
                                  "--resolution", 64, "--batch-size", 2, "--sample-steps", 0)
    return facts, outs


def test_stage1_inverts_on_a_bf16_base(style_token_stages, tmp_path):
    facts, outs = style_token_stages
    assert BF16_BASE in facts["stage1"]["precision"] and "computes in bf16" in facts["stage1"]["precision"]
    index = read_index(outs["stage1"])
    tokens, _ = load_tokens(outs["stage1"], sorted(index))
    start = init_tokens(sorted(index), {"clip_l": 768}, 8, 0.02, 0)
    curves = json.loads(next(outs["stage1"].glob("losses-r*.json")).read_text())
    assert_finite_and_moved([v for c in curves.values() for v in c], (tokens["clip_l"] - start["clip_l"]).abs().max().item())
    exported = tmp_path / "one.safetensors"
    subprocess.run([sys.executable, "-m", "trainers.style_tokens.stage1", "--output-dir", str(outs["stage1"]),
                    "--export", sorted(index)[0], "--to", str(exported)], cwd=REPO_ROOT, check=True, capture_output=True)
    assert read_embedding(exported)["clip_l"].dtype == torch.float32


def test_stage2_and_stage3_train_the_encoder_in_bf16(style_token_stages):
    facts, outs = style_token_stages
    assert "computes in bf16" in facts["stage2"]["precision"]
    assert BF16_BASE in facts["stage3"]["precision"]
    before = load_style_encoder(outs["stage2"] / "style_encoder.safetensors").state_dict()
    after = load_style_encoder(outs["stage3"] / "style_encoder.safetensors").state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point()), "trainables stay fp32"
    assert_finite_and_moved(losses_of(outs["stage2"]) + losses_of(outs["stage3"]),
                            max((after[k] - before[k]).abs().max().item() for k in before))


@pytest.mark.parametrize("text_encoder", [False, True], ids=["unet", "unet+text-encoder"])
def test_styleforge_trains_on_a_bf16_base(tiny_checkpoint, data, tmp_path, text_encoder):
    root, _ = data
    facts = run_trainer("styleforge", tmp_path, "--checkpoint", tiny_checkpoint("sd15"), "--styleref", root / "refs",
                        "--aux", root / "aux", "--resolution", 64, "--steps", 2, "--lr", "5e-3", "--sample-steps", 0,
                        *([] if text_encoder else ["--no-train-text-encoder"]))
    assert BF16_BASE in facts["precision"]
    tensors, _ = read_lora(tmp_path / "styleforge.safetensors")
    assert any(k.startswith("lora_te") for k in tensors) == text_encoder
    assert_finite_and_moved(losses_of(tmp_path), max(t.float().abs().max().item() for k, t in tensors.items()
                                                     if k.endswith("lora_up.weight")))


def test_osasis_trains_on_a_bf16_base_with_gradient_checkpointing(tiny_checkpoint, tiny_models_dir, data, tmp_path):
    from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
    root, _ = data
    facts = run_trainer("osasis.train", tmp_path, "--checkpoint", tiny_checkpoint("sd15"), "--style", root / "style.png",
                        "--content", root / "aux", "--style-encoder",
                        tiny_models_dir / "style_encoders" / DEFAULT_STYLE_ENCODERS["sd15"], "--resolution", 64,
                        "--ddim-steps", 6, "--steps", 2, "--batch-size", 1, "--sampler-steps", 2, "--sdedit-candidates", 1,
                        "--gradient-checkpointing")
    assert BF16_BASE in facts["precision"]
    style = load_osasis_style(tmp_path / "osasis_style.safetensors")
    assert_finite_and_moved(losses_of(tmp_path), max(t.float().abs().max().item() for k, t in style.lora.items()
                                                     if k.endswith("lora_up.weight")))
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["precision"] == "bf16" and timing["steps_timed"] == 2
