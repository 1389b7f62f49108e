"""The evaluation metrics against reference computations on fixed inputs, with random weights written in
each model's real file format (no weights are downloaded)."""
import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from core.style_tokens.clip_backbones import TINY_VIT, open_clip_with_configs
from core.evaluation.stats import mean_ci95
from core.evaluation.weights import MetricUnavailable
from core.data.image_preprocess import preprocess
from core.evaluation.metric_clip import clip_t, cosine, load_clip
from core.evaluation.metric_csd import load_csd
from core.evaluation.metric_inception import WEIGHTS_FILE, fid, kid, load_inception, random_inception_state
from core.evaluation.metric_lpips import TRUNK_FILES, load_lpips
from core.evaluation.metric_style_tokens import style_tokens
from devkit.tiny_metric_weights import write_tiny_clip, write_tiny_csd
from devkit.tiny_style_encoders import build_style_encoder


def images(seed: int, n: int = 2, size: int = 80) -> torch.Tensor:
    return torch.rand(n, size, size, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory):
    """A randomly initialised whole open_clip model of the tiny architecture, saved as safetensors."""
    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip.safetensors", seed=3)


# ---- CLIP-T and image cosine ------------------------------------------------------------------------------
def test_clip_t_is_100_times_the_clamped_cosine():
    image = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8]]), dim=-1)
    text = F.normalize(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [1.0, 0.0]]), dim=-1)
    assert torch.allclose(clip_t(image, text), torch.tensor([100.0, 0.0, 60.0]))


def test_clip_from_file_matches_open_clip_and_identical_images_have_cosine_one(tiny_clip_file):
    path, reference = tiny_clip_file
    clip = load_clip(f"{TINY_VIT}:{path}")
    assert clip.has_text
    x, prompt = images(0, n=1), "a lighthouse on a cliff"
    pixels = preprocess(x, clip.preprocess)
    tokenizer = open_clip_with_configs().get_tokenizer(TINY_VIT)
    with torch.no_grad():
        expected = F.cosine_similarity(reference.encode_image(pixels), reference.encode_text(tokenizer([prompt])))
    got = clip_t(clip.image_embeddings(x), clip.text_embeddings([prompt]))
    assert torch.allclose(got, 100 * expected.clamp(min=0), atol=1e-4)
    assert cosine(clip.image_embeddings(x), clip.image_embeddings(x.clone())).item() == pytest.approx(1.0, abs=1e-6)
    assert cosine(clip.image_embeddings(x), clip.image_embeddings(images(1, n=1))).item() < 1 - 1e-4


def test_clip_vision_file_matches_transformers_image_embeds(tmp_path):
    """A models/clip_vision file (Hugging Face layout) gives the same embeddings as transformers itself."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection
    torch.manual_seed(5)
    config = CLIPVisionConfig(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=16,
                              image_size=64, patch_size=16, projection_dim=32, hidden_act="gelu")
    hf = CLIPVisionModelWithProjection(config).eval()
    path = tmp_path / "clip_vision_tiny.safetensors"
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    clip = load_clip(path.name, clip_vision_dir=tmp_path)
    assert not clip.has_text
    x = images(2, n=2, size=64)
    with torch.no_grad():
        expected = F.normalize(hf(pixel_values=preprocess(x, clip.preprocess)).image_embeds, dim=-1)
    assert torch.allclose(clip.image_embeddings(x), expected, atol=1e-4)
    with pytest.raises(MetricUnavailable, match="vision-only"):
        clip.text_embeddings(["a prompt"])


def test_clip_without_weights_is_refused_unless_random_init_is_asked_for():
    with pytest.raises(MetricUnavailable, match="random-init"):
        load_clip(TINY_VIT)
    assert load_clip(TINY_VIT, random_init=True).name.endswith("(random weights)")


# ---- CSD ------------------------------------------------------------------------------------------------
def test_csd_style_descriptor_matches_the_reference_forward(tmp_path):
    path = tmp_path / "checkpoint.pth"
    backbone, style = write_tiny_csd(path)
    csd = load_csd(path)
    x = images(3, n=2, size=64)
    with torch.no_grad():
        expected = F.normalize(backbone(preprocess(x, csd.preprocess)) @ style, dim=-1)
    assert torch.allclose(csd.style_embeddings(x), expected, atol=1e-5)
    assert cosine(csd.style_embeddings(x[:1]), csd.style_embeddings(x[:1].clone())).item() == pytest.approx(1.0, abs=1e-6)


def test_checkpoint_needing_more_than_weights_only_is_refused(tmp_path):
    path = tmp_path / "checkpoint.pth"
    torch.save({"model_state_dict": {}, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(MetricUnavailable, match="weights_only=True"):
        load_csd(path)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        load_csd(tmp_path / "absent.pth")


# ---- our style encoder ------------------------------------------------------------------------------------
def test_style_token_cosine_of_identical_images_is_one():
    encoder = build_style_encoder("sdxl", seed=0)
    x = images(4, n=1)
    tokens = style_tokens(encoder, x)
    with torch.no_grad():
        direct = encoder(preprocess(x, encoder.config.preprocess))
    assert tokens.shape == (1, 8 * (768 + 1280))
    assert torch.equal(tokens, torch.cat([direct["clip_g"].flatten(1), direct["clip_l"].flatten(1)], dim=1))
    assert cosine(tokens, style_tokens(encoder, x.clone())).item() == pytest.approx(1.0, abs=1e-6)


# ---- LPIPS --------------------------------------------------------------------------------------------------
def test_lpips_matches_the_lpips_package_on_the_same_trunk_file(tmp_path, monkeypatch):
    """The trunk file in torchvision's cache layout: our loader and the lpips package (which asks torchvision for
    its cached ImageNet weights) read the same file, so they must agree; identical images score 0."""
    import lpips
    import torchvision
    torch.manual_seed(7)
    hub = tmp_path / "hub"
    (hub / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.alexnet(weights=None).state_dict(), hub / "checkpoints" / TRUNK_FILES["alex"])
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    ours = load_lpips("alex")
    reference = lpips.LPIPS(net="alex", verbose=False).eval()
    a, b = images(5), images(6)
    with torch.no_grad():
        expected = reference(a.permute(0, 3, 1, 2)[..., 8:72, 8:72].contiguous(), b.permute(0, 3, 1, 2)[..., 8:72, 8:72].contiguous(),
                             normalize=True).flatten()
    got = ours(a[:, 8:72, 8:72], b[:, 8:72, 8:72])
    # ours resizes to 256 px first, so compare the same resize done by hand
    resized = lambda x: F.interpolate(x.permute(0, 3, 1, 2)[..., 8:72, 8:72], size=(256, 256), mode="bicubic",  # noqa: E731
                                      align_corners=False).clamp(0, 1)
    with torch.no_grad():
        expected = reference(resized(a), resized(b), normalize=True).flatten()
    assert torch.allclose(got, expected, atol=1e-5)
    assert (got > 0).all()
    assert ours(a, a.clone()).abs().max().item() < 1e-6


def test_lpips_without_trunk_weights_is_unavailable(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(MetricUnavailable, match=TRUNK_FILES["alex"]):
        load_lpips("alex")
    assert load_lpips("alex", random_trunk=True)(images(0), images(0)).abs().max() < 1e-6


# ---- FID and KID --------------------------------------------------------------------------------------------
def fid_reference(real: torch.Tensor, fake: torch.Tensor) -> float:
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r^1/2 S_f S_r^1/2)^1/2), through symmetric eigendecompositions."""
    def sqrt_psd(m):
        values, vectors = torch.linalg.eigh(m)
        return vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    mu_r, mu_f = real.mean(0), fake.mean(0)
    s_r, s_f = torch.cov(real.T), torch.cov(fake.T)
    root = sqrt_psd(s_r)
    return float((mu_r - mu_f).square().sum() + s_r.trace() + s_f.trace() - 2 * sqrt_psd(root @ s_f @ root).trace())


def kid_reference(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3 (Binkowski et al. 2018)."""
    d, m = real.shape[1], real.shape[0]
    k = lambda a, b: (a @ b.T / d + 1) ** 3   # noqa: E731
    k_rr, k_ff, k_rf = k(real, real), k(fake, fake), k(real, fake)
    off = lambda km: (km.sum() - km.diagonal().sum()) / (m * (m - 1))   # noqa: E731
    return float(off(k_rr) + off(k_ff) - 2 * k_rf.mean())


def test_fid_and_kid_match_reference_formulas_and_vanish_for_identical_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 64, generator=g, dtype=torch.float64)
    fake = 0.8 * torch.randn(200, 64, generator=g, dtype=torch.float64) + 0.3
    assert fid(real, fake) == pytest.approx(fid_reference(real, fake), rel=1e-4)
    kid_mean, kid_std = kid(real, fake)
    assert kid_mean == pytest.approx(kid_reference(real, fake), rel=1e-6)   # subsets = the whole sets
    assert kid_std == pytest.approx(0.0, abs=1e-9)
    assert abs(fid(real, real.clone())) < 1e-6 * fid(real, fake)
    # KID is unbiased: two independent samples of one distribution score about 0 (identical sets do not: the
    # estimator leaves out k(x, x) within a set but not across sets, and the reference formula says by how much)
    same_distribution = torch.randn(200, 64, generator=g, dtype=torch.float64)
    assert abs(kid(real, same_distribution)[0]) < 0.05 * kid_mean
    assert kid(real, real.clone())[0] == pytest.approx(kid_reference(real, real.clone()), rel=1e-6)


def test_inception_file_round_trip_and_features_of_identical_images(tmp_path):
    path = tmp_path / WEIGHTS_FILE
    torch.save(random_inception_state(seed=0), path)
    from_file, random = load_inception(path), load_inception(random_init=True)
    x = images(8, n=2, size=96)
    features = from_file(x)
    assert features.shape == (2, 2048)
    assert torch.allclose(features, random(x), atol=1e-6)   # the file holds exactly the seed-0 random weights
    assert torch.allclose(from_file(x.clone()), features, atol=1e-9)
    with pytest.raises(MetricUnavailable, match="does not exist"):
        load_inception(tmp_path / "absent.pth")



def test_inception_features_are_torch_fidelitys_extractor_on_the_same_file(tmp_path):
    """Ours (our reader, to_uint8, torchmetrics' wrapper) against torch-fidelity's own FeatureExtractorInceptionV3
    given the same weights file and uint8 images made here by hand. The real weights file cannot be fetched
    offline, so the file holds the seed-0 random weights of the same architecture."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    path = tmp_path / WEIGHTS_FILE
    torch.save(random_inception_state(seed=0), path)
    x = images(9, n=3, size=80)
    reference = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path))
    by_hand = (x * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
    with torch.no_grad():
        expected = reference.eval()(by_hand)[0].double()
    ours = load_inception(path)(x)
    assert ours.shape == expected.shape == (3, 2048)
    assert ((ours - expected).norm() / expected.norm()).item() <= 1e-5

# ---- summary statistics -------------------------------------------------------------------------------------
def test_mean_ci95_is_the_student_t_interval():
    from scipy import stats
    values = [0.2, 0.4, 0.5, 0.9, float("nan")]
    mean, low, high, n = mean_ci95(values)
    finite = values[:4]
    expected = stats.t.interval(0.95, 3, loc=sum(finite) / 4, scale=stats.sem(finite))
    assert n == 4 and mean == pytest.approx(0.5)
    assert (low, high) == pytest.approx(expected)
    one = mean_ci95([0.3])
    assert one[0] == 0.3 and math.isnan(one[1]) and math.isnan(one[2])
    assert math.isnan(mean_ci95([])[0])
