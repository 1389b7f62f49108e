"""python -m evaluation.evaluate: manifests and specs are checked, missing weights are reported (their columns
left out), and a tiny-model comparison generated through the real ComfyUI host writes the whole report."""
import csv
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.evaluation.comparison_spec import read_spec
from core.evaluation.manifest import ManifestError, read_manifest
from devkit.example_inputs import content_image, style_reference
from devkit.paths import make_base_dir
from devkit.server import ComfyServer
from devkit.tiny_metric_weights import write_tiny_clip, write_tiny_csd
from devkit.tiny_models import TINY_CHECKPOINTS
from devkit.tiny_osasis_styles import DEFAULT_OSASIS_STYLES
from devkit.tiny_style_encoders import DEFAULT_STYLE_ENCODERS
from evaluation.comparison_graphs import ipadapter_graph, why_skipped
from evaluation.evaluate import main, parse_args


@pytest.fixture
def inputs(tmp_path):
    """A style reference, a content image and two generated-looking images, with a manifest of them."""
    style_reference(size=64).save(tmp_path / "style.png")
    content_image(size=64).save(tmp_path / "content.png")
    for i, method in enumerate(("ours", "theirs")):
        Image.effect_noise((64, 64), 40 + 20 * i).convert("RGB").save(tmp_path / f"{method}.png")
    rows = [{"method": m, "image": f"{m}.png", "prompt": "a lighthouse", "reference": "style.png",
             "content": "content.png", "seed": 1} for m in ("ours", "theirs")]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


@pytest.fixture
def running_comfyui(tmp_path, extra_model_paths):
    """A ComfyUI with the pack and the tiny models, started by the harness: what --comfyui-url points at."""
    with ComfyServer(make_base_dir(tmp_path / "base"), extra_args=(), extra_model_paths=extra_model_paths) as server:
        yield server


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- manifests and specs --------------------------------------------------------------------------------------
@pytest.mark.parametrize("content, message", [
    (None, "has no manifest.jsonl"),
    ("", "is empty"),
    ("{not json\n", "line 1 is not JSON"),
    ('{"method": "a", "image": "ours.png"}\n', "lacks prompt, reference"),
    ('{"method": "a", "image": "gone.png", "prompt": "p", "reference": "style.png"}\n', "do not exist"),
    ('{"method": "a", "image": "ours.png", "prompt": "p", "reference": "style.png", "seed": "7"}\n', "seed must be an integer"),
    ('{"method": "a", "image": "ours.png", "prompt": "p", "reference": "style.png", "colour": 1}\n', "unknown keys"),
])
def test_bad_manifests_name_the_problem(inputs, content, message):
    (inputs / "manifest.jsonl").unlink()
    if content is not None:
        (inputs / "manifest.jsonl").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(inputs)


def test_manifest_paths_are_relative_to_its_folder(inputs):
    rows = read_manifest(inputs / "manifest.jsonl")
    assert [r.method for r in rows] == ["ours", "theirs"]
    assert rows[0].image == inputs / "ours.png" and rows[0].content == inputs / "content.png"
    with pytest.raises(ManifestError, match="do not exist"):
        read_manifest(inputs / "absent")


@pytest.mark.parametrize("spec, message", [
    ({"cases": []}, "needs a \"checkpoint\""),
    ({"checkpoint": "x", "cases": []}, "cases must be a non-empty list"),
    ({"checkpoint": "x", "cases": [{"prompt": "p", "reference": "style.png"}], "methods": ["dreambooth"]}, "methods must"),
    ({"checkpoint": "x", "cases": [{"prompt": "p", "reference": "gone.png"}]}, "does not exist"),
    ({"checkpoint": "x", "cases": [{"prompt": "p", "reference": "style.png"}], "sampling": {"steps": "4"}}, "steps must be a int"),
])
def test_bad_specs_name_the_problem(inputs, spec, message):
    (inputs / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ManifestError, match=message):
        read_spec(inputs / "spec.json")


def test_ipadapter_is_skipped_without_its_nodes_and_built_from_their_schema(inputs):
    (inputs / "spec.json").write_text(json.dumps({"checkpoint": "x.safetensors", "seeds": [3],
                                                  "cases": [{"prompt": "p", "reference": "style.png"}]}))
    spec = read_spec(inputs / "spec.json")
    case = spec.cases[0]
    assert "ComfyUI_IPAdapter_plus" in why_skipped("ipadapter", case, {})
    assert "no style_encoder" in why_skipped("style_tokens", case, {})
    assert "no content image" in why_skipped("osasis", case.__class__(**{**case.__dict__, "models": {
        "style_encoder": "e", "osasis_style": "o", "styleforge_lora": None}}), {})
    object_info = {   # the shape of IPAdapter+'s /object_info entries
        "IPAdapterUnifiedLoader": {"input": {"required": {"model": ["MODEL"], "preset": [["LIGHT", "PLUS (high strength)"]]}}},
        "IPAdapterAdvanced": {"input": {"required": {
            "model": ["MODEL"], "ipadapter": ["IPADAPTER"], "image": ["IMAGE"],
            "weight": ["FLOAT", {"default": 1.0}], "weight_type": [["linear", "style transfer"]],
            "start_at": ["FLOAT", {"default": 0.0}], "end_at": ["FLOAT", {"default": 1.0}]}}}}
    assert why_skipped("ipadapter", case, object_info) is None
    graph = ipadapter_graph(spec, case, 3, {case.reference: "stylesmith-eval/ref.png"}, object_info)
    nodes = {n["class_type"]: n["inputs"] for n in graph.values()}
    assert nodes["IPAdapterUnifiedLoader"]["preset"] == "PLUS (high strength)"
    assert nodes["IPAdapterAdvanced"]["weight_type"] == "style transfer"
    assert nodes["IPAdapterAdvanced"]["end_at"] == 1.0
    assert nodes["KSampler"]["seed"] == 3 and nodes["KSampler"]["model"][0] != nodes["IPAdapterUnifiedLoader"]["model"][0]


# ---- missing weights ------------------------------------------------------------------------------------------
def test_missing_weights_are_reported_and_their_columns_skipped(inputs, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(inputs / "empty-hub"))
    report = inputs / "report"
    files = main(parse_args(["--outputs", str(inputs), "--report-dir", str(report), "--clip", "StyleSmith-Tiny-ViT",
                             "--csd", str(inputs / "csd.pth"), "--style-encoder", str(inputs / "enc.safetensors")]))
    header = list(read_csv(files["scores"])[0])
    assert header == ["method", "case", "seed", "prompt", "image", "reference", "content"]   # no score column is faked
    page = files["html"].read_text()
    for missing in ("CLIP (clip_t, style_clip, content_clip)</b>: missing", "CSD (style_csd)</b>: missing",
                    "style encoder (style_tokens)</b>: missing", "LPIPS (content_lpips)</b>: missing",
                    "Inception (fid, kid)</b>: missing", "random-init", "alexnet-owt-7be5be79.pth",
                    "weights-inception-2015-12-05-6726825d.pth"):
        assert missing in page
    assert "RANDOM WEIGHTS" not in page


def test_random_init_fills_the_columns_and_says_so(inputs):
    files = main(parse_args(["--outputs", str(inputs), "--report-dir", str(inputs / "r"), "--clip", "StyleSmith-Tiny-ViT",
                             "--random-init", "--no-fid"]))
    rows = read_csv(files["scores"])
    assert [r["method"] for r in rows] == ["ours", "theirs"]
    assert {"clip_t", "style_clip", "content_lpips", "content_clip"} <= set(rows[0])
    assert "style_csd" not in rows[0] and "fid" not in read_csv(files["summary"])[0]
    assert "RANDOM WEIGHTS" in files["html"].read_text()


# ---- end to end through the real host ---------------------------------------------------------------------------
def test_tiny_model_comparison_generates_every_method_and_writes_the_report(tmp_path, extra_model_paths, running_comfyui):
    style_reference(size=64).save(tmp_path / "style.png")
    content_image(size=64).save(tmp_path / "content.png")
    real = tmp_path / "real"
    real.mkdir()
    for seed in (1, 2):
        style_reference(size=64, seed=seed).save(real / f"style{seed}.png")
    spec = {"checkpoint": TINY_CHECKPOINTS["sd15"], "style_encoder": DEFAULT_STYLE_ENCODERS["sd15"],
            "styleforge_lora": "stylesmith-tiny-styleforge-sd15.safetensors", "osasis_style": DEFAULT_OSASIS_STYLES["sd15"],
            "seeds": [7, 8], "sampling": {"steps": 2, "width": 64, "height": 64},
            "osasis": {"steps": 4, "inversion_iterations": 1},
            "cases": [{"name": "lighthouse", "reference": "style.png", "prompt": "a lighthouse on a cliff",
                       "content": "content.png"}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    write_tiny_clip(tmp_path / "clip.safetensors")
    write_tiny_csd(tmp_path / "csd.pth")
    report = tmp_path / "report"

    files = main(parse_args(["--spec", str(tmp_path / "spec.json"), "--report-dir", str(report),
                             "--comfyui-url", running_comfyui.url, "--extra-model-paths", str(extra_model_paths),
                             "--clip", f"StyleSmith-Tiny-ViT:{tmp_path / 'clip.safetensors'}", "--csd", str(tmp_path / "csd.pth"),
                             "--random-init", "--fid-real", str(real), "--fid-features", "64"]))

    rows = read_csv(files["scores"])
    assert sorted((r["method"], r["seed"]) for r in rows) == sorted(
        (m, s) for m in ("style_tokens", "styleforge", "osasis") for s in ("7", "8"))
    assert list(rows[0]) == ["method", "case", "seed", "prompt", "image", "reference", "content", "clip_t", "style_clip",
                             "style_csd", "style_tokens", "content_lpips", "content_clip"]
    for row in rows:
        scores = {k: float(row[k]) for k in ("clip_t", "style_clip", "style_csd", "style_tokens", "content_lpips", "content_clip")}
        assert all(math.isfinite(v) for v in scores.values()), row
        assert 0 <= scores["clip_t"] <= 100 and all(-1 - 1e-6 <= scores[k] <= 1 + 1e-6 for k in
                                                     ("style_clip", "style_csd", "style_tokens", "content_clip"))
    summary = read_csv(files["summary"])
    assert [s["method"] for s in summary] == ["style_tokens", "styleforge", "osasis"]
    assert all(math.isfinite(float(s["fid"])) and float(s["kid_std"]) >= 0 for s in summary)
    assert all(float(s["style_clip_ci_low"]) <= float(s["style_clip_mean"]) <= float(s["style_clip_ci_high"])
               for s in summary)
    generated = read_manifest(report / "generated")
    assert len(generated) == 6 and all(r.image.is_file() for r in generated)
    # what the scores are computed against (tests/test_evaluation_rows.py checks each score on its pair): the case's
    # own prompt, reference and content image, in the manifest and in scores.csv
    case = ("a lighthouse on a cliff", (tmp_path / "style.png").resolve(), (tmp_path / "content.png").resolve())
    assert all((r.prompt, r.reference.resolve(), r.content.resolve()) == case for r in generated)
    assert all((r["prompt"], Path(r["reference"]).resolve(), Path(r["content"]).resolve()) == case for r in rows)
    page = files["html"].read_text()
    assert page.count("<img ") == 2 * 2 + 6      # reference and content row + one image per method and seed
    assert "ipadapter skipped" in page and "RANDOM WEIGHTS" in page
    with Image.open(files["grid"]) as grid:
        assert grid.size == (150 + 2 * 128, 18 + 5 * 128)
    assert "| style_tokens | 2 |" in files["markdown"].read_text()
