"""Every number python -m evaluation.evaluate writes is recomputed here from the metric models' own files with the
right pair: the generated image against its prompt (clip_t), its style reference (style_clip, style_csd,
style_tokens), its content image (content_lpips, content_clip), and each method's images against the real set
(fid, kid). The references are not computed with the evaluation's loaders: CLIP, CSD and the style encoder are the
modules the weight files were written from, LPIPS is the lpips package on the same trunk file, Inception features
are torch-fidelity's extractor on the same weights file (FID and KID on them are the evaluation's torchmetrics
formulas, which tests/test_evaluation_metrics.py checks against the textbook ones). Each case has its own prompt,
reference and content image, and the test first checks that the wrong pair (reference for content, another case's
prompt, the references or another method's images as a set) lands at least MARGIN tolerances away, so a swapped
pair in the evaluation fails it. Tolerance: |got - expected| <= 1e-6 + 1e-5 |expected|."""
import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from core.data.image_preprocess import Preprocess, preprocess
from core.evaluation.metric_inception import WEIGHTS_FILE, fid, kid, random_inception_state
from core.evaluation.metric_lpips import TO_SIGNED, TRUNK_FILES
from core.formats.clip_vision_import import CLIP_MEAN, CLIP_STD
from core.formats.style_encoder_file import save_style_encoder
from core.style_tokens.clip_backbones import TINY_VIT, open_clip_with_configs
from devkit.example_inputs import content_image, style_reference
from devkit.tiny_metric_weights import write_tiny_clip, write_tiny_csd
from devkit.tiny_style_encoders import build_style_encoder
from evaluation.evaluate import main, parse_args

FEATURES = 64                      # the Inception tap: the cheap one; the pairing is what is under test
REL, ABS = 1e-5, 1e-6              # scores.csv keeps 6 significant digits (5e-6 relative); the models agree to ~1e-7
MARGIN = 10                        # a wrong pair must land at least this many tolerances away, or the test is blind
PROMPTS = ("a lighthouse on a cliff", "a red bicycle in the snow", "a bowl of lemons")
METHODS = ("ours", "theirs")


def close(got: float, expected: float, tolerances: float = 1) -> bool:
    return abs(got - expected) <= tolerances * (ABS + REL * abs(expected))


def pixels(path) -> torch.Tensor:
    """(1, H, W, 3) float in [0, 1], read here with PIL and numpy."""
    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255)[None]


def shifted_content(case: int) -> Image.Image:
    """A different content photo per case: the shapes rolled and the colours rotated."""
    array = np.roll(np.asarray(content_image(size=64)), 21 * case, axis=1)
    return Image.fromarray(np.roll(array, case, axis=2))


def generated(reference: Image.Image, content: Image.Image, noise: float, seed: int) -> Image.Image:
    """A stand-in output: a blend of its content image, its reference and a share of noise (each method its own,
    so that the methods' image sets differ)."""
    rest = 1 - noise
    blend = (0.6 * rest * np.asarray(content, dtype=np.float64) + 0.4 * rest * np.asarray(reference)
             + noise * np.random.default_rng(seed).uniform(0, 255, (64, 64, 3)))
    return Image.fromarray(blend.round().astype(np.uint8))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """Three cases (own prompt, reference, content) x two methods; the last row has no content image; a separate
    real set for FID/KID. Returns the folder, the manifest rows, the report's files and the reference models."""
    root = tmp_path_factory.mktemp("rows")
    rows = []
    for case, prompt in enumerate(PROMPTS):
        reference, content = style_reference(size=64, seed=case), shifted_content(case)
        reference.save(root / f"ref{case}.png")
        content.save(root / f"content{case}.png")
        for m, method in enumerate(METHODS):
            generated(reference, content, noise=0.2 + 0.4 * m, seed=10 * m + case).save(root / f"{method}{case}.png")
            row = {"method": method, "image": f"{method}{case}.png", "prompt": prompt, "reference": f"ref{case}.png",
                   "content": f"content{case}.png", "seed": case}
            if (method, case) == (METHODS[1], 2):
                del row["content"]
            rows.append(row)
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "real").mkdir()
    for i in range(3):
        style_reference(size=64, seed=20 + i).save(root / "real" / f"real{i}.png")

    _, clip = write_tiny_clip(root / "clip.safetensors", seed=3)
    csd_backbone, csd_style = write_tiny_csd(root / "csd.pth", seed=4)
    encoder = build_style_encoder("sd15", seed=5)
    save_style_encoder(encoder, root / "encoder.safetensors")
    torch.save(random_inception_state(seed=6), root / WEIGHTS_FILE)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        (root / "hub" / "checkpoints").mkdir(parents=True)
        torch.save(torchvision.models.alexnet(weights=None).state_dict(), root / "hub" / "checkpoints" / TRUNK_FILES["alex"])

    files = main(parse_args([
        "--outputs", str(root), "--report-dir", str(root / "report"), "--clip", f"{TINY_VIT}:{root / 'clip.safetensors'}",
        "--csd", str(root / "csd.pth"), "--style-encoder", str(root / "encoder.safetensors"),
        "--lpips-trunk", str(root / "hub" / "checkpoints" / TRUNK_FILES["alex"]), "--inception", str(root / WEIGHTS_FILE),
        "--fid-features", str(FEATURES), "--fid-real", str(root / "real")]))
    models = {"clip": clip, "csd": (csd_backbone, csd_style), "encoder": encoder}
    return root, rows, files, models


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class Reference:
    """The numbers computed here, each from the models the weight files were written from; one value per file
    (or prompt), as the evaluation also computes each once."""

    def __init__(self, root, models, monkeypatch):
        import lpips
        self.root, self.clip, (self.csd_backbone, self.csd_style), self.encoder = root, *models
        cfg = open_clip_with_configs().get_model_preprocess_cfg(self.clip)
        self.clip_spec = Preprocess(size=cfg["size"][0] if isinstance(cfg["size"], (tuple, list)) else cfg["size"],
                                    mean=tuple(cfg["mean"]), std=tuple(cfg["std"]))
        self.tokenizer = open_clip_with_configs().get_tokenizer(TINY_VIT)
        self.csd_spec = Preprocess(size=64, mean=CLIP_MEAN, std=CLIP_STD)
        monkeypatch.setattr(torch.hub, "get_dir", lambda: str(root / "hub"))   # lpips takes its trunk from there
        self.lpips = lpips.LPIPS(net="alex", verbose=False).eval()
        self.cache = {}

    def once(self, key, fn):
        if key not in self.cache:
            with torch.no_grad():
                self.cache[key] = fn()
        return self.cache[key]

    def clip_image(self, name):
        return self.once(("clip", name), lambda: self.clip.encode_image(preprocess(pixels(self.root / name), self.clip_spec)))

    def clip_text(self, prompt):
        return self.once(("text", prompt), lambda: self.clip.encode_text(self.tokenizer([prompt])))

    def csd(self, name):
        return self.once(("csd", name), lambda: self.csd_backbone(preprocess(pixels(self.root / name), self.csd_spec))
                         @ self.csd_style)

    def tokens(self, name):
        def run():
            out = self.encoder(preprocess(pixels(self.root / name), self.encoder.config.preprocess))
            return torch.cat([out[head].flatten(1) for head in sorted(out)], dim=1)
        return self.once(("tokens", name), run)

    def score(self, column: str, image: str, prompt: str, reference: str, content: str | None) -> float:
        """One cell of scores.csv from the pair the column names."""
        cos = lambda a, b: float(F.cosine_similarity(a, b)[0])   # noqa: E731
        if column == "clip_t":
            return 100 * max(cos(self.clip_image(image), self.clip_text(prompt)), 0.0)
        if column.startswith("style_"):
            embed = {"style_clip": self.clip_image, "style_csd": self.csd, "style_tokens": self.tokens}[column]
            return cos(embed(image), embed(reference))
        if content is None:
            return math.nan
        if column == "content_clip":
            return cos(self.clip_image(image), self.clip_image(content))
        with torch.no_grad():
            a, b = (preprocess(pixels(self.root / name), TO_SIGNED) for name in (image, content))
            return float(self.lpips(a, b).flatten()[0])

    def inception(self, names) -> torch.Tensor:
        """torch-fidelity's own extractor on the weights file, fed uint8 made here."""
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        net = self.once("inception", lambda: FeatureExtractorInceptionV3(
            "inception-v3-compat", [str(FEATURES)], feature_extractor_weights_path=str(self.root / WEIGHTS_FILE)).eval())
        def run(name):
            return net((pixels(self.root / name) * 255).round().to(torch.uint8).permute(0, 3, 1, 2))[0].double()
        return torch.cat([self.once(("inception", name), lambda: run(name)) for name in names])


COLUMNS = ("clip_t", "style_clip", "style_csd", "style_tokens", "content_lpips", "content_clip")


@pytest.fixture(scope="module")
def reference(report):
    root, _, _, models = report
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield Reference(root, (models["clip"], models["csd"], models["encoder"]), monkeypatch)


def wrong_pair(row: dict, column: str) -> dict:
    """The pair a plausible bug would score: another case's prompt, the content image for the reference, the
    reference for the content image."""
    if column == "clip_t":
        return {**row, "prompt": PROMPTS[(PROMPTS.index(row["prompt"]) + 1) % len(PROMPTS)]}
    if column.startswith("style_"):
        return {**row, "reference": row.get("content") or row["reference"].replace("ref", "content")}
    return {**row, "content": row["reference"]}


def cell(reference: Reference, column: str, row: dict) -> float:
    return reference.score(column, row["image"], row["prompt"], row["reference"], row.get("content"))


@pytest.mark.parametrize("column", COLUMNS)
def test_every_score_is_its_metric_on_the_right_pair(report, reference, column):
    root, rows, files, _ = report
    written = read_csv(files["scores"])
    assert [(r["method"], r["image"]) for r in written] == [(r["method"], str(root / r["image"])) for r in rows]
    for row, out in zip(rows, written):
        expected, wrong = cell(reference, column, row), cell(reference, column, wrong_pair(row, column))
        if "content" not in row and column.startswith("content_"):
            assert out[column] == "", "a row without a content image has no content score"
            continue
        assert not close(wrong, expected, MARGIN), f"{column}: the wrong pair scores {wrong}, too near {expected} to tell"
        assert close(float(out[column]), expected), f"{column} of {row['image']}: {out[column]}, expected {expected}"
    for entry in read_csv(files["summary"]):
        mine = [cell(reference, column, r) for r in rows if r["method"] == entry["method"]]
        mine = [v for v in mine if not math.isnan(v)]
        assert close(float(entry[f"{column}_mean"]), sum(mine) / len(mine))


def test_fid_and_kid_are_each_methods_images_against_the_real_set(report, reference):
    root, rows, files, _ = report
    real = reference.inception(sorted(p.relative_to(root).as_posix() for p in (root / "real").iterdir()))
    references = reference.inception(sorted({r["reference"] for r in rows}))
    summary = {entry["method"]: entry for entry in read_csv(files["summary"])}
    assert list(summary) == list(METHODS)
    for method in METHODS:
        mine = reference.inception([r["image"] for r in rows if r["method"] == method])
        other = reference.inception([r["image"] for r in rows if r["method"] != method])
        expected_fid, (expected_kid, expected_kid_std) = fid(real, mine), kid(real, mine)
        for wrong in (fid(references, mine), fid(real, other)):    # the references as the real set; the other method
            assert not close(wrong, expected_fid, MARGIN), "the test could not tell the wrong sets"
        assert not close(kid(references, mine)[0], expected_kid, MARGIN) and not close(kid(real, other)[0], expected_kid, MARGIN)
        got = summary[method]
        assert float(got["n"]) == len(mine)
        assert close(float(got["fid"]), expected_fid), (method, got["fid"], expected_fid)
        assert close(float(got["kid"]), expected_kid), (method, got["kid"], expected_kid)
        assert close(float(got["kid_std"]), expected_kid_std)   # ~0: three images, so every subset is the whole set
