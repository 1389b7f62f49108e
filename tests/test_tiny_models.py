"""The tiny checkpoints are real SD1.5 / SDXL files as far as ComfyUI's own loader is concerned."""
import logging

import pytest
import torch

from core.formats.safe_files import file_sha256
from devkit.tiny_models import build_checkpoint

pytestmark = pytest.mark.hosts


@pytest.fixture(scope="module")
def comfy_sd():
    from comfy_adapter.host import import_comfy
    import_comfy()
    import comfy.sd
    return comfy.sd


def load(comfy_sd, path, caplog):
    with caplog.at_level(logging.WARNING):
        model, clip, vae, _ = comfy_sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    problems = [r.getMessage() for r in caplog.records if "missing" in r.getMessage() or "left over" in r.getMessage()]
    assert problems == [], problems
    return model, clip, vae


def assert_text_encoders_hold_the_files_weights(model, clip, path):
    """Every text-encoder weight ComfyUI loaded equals the file's (none left uninitialised)."""
    import comfy.utils
    from_file = model.model.model_config.process_clip_state_dict(comfy.utils.load_torch_file(str(path)))
    loaded = clip.cond_stage_model.state_dict()
    compared = 0
    for name, value in loaded.items():
        if name in from_file and value.is_floating_point():
            assert torch.equal(value.float(), from_file[name].float()), f"{name} differs from the file"
            compared += 1
    weights = [n for n, v in loaded.items() if v.ndim == 2 and n in from_file]
    assert compared >= 0.95 * len([v for v in loaded.values() if v.is_floating_point()])
    for name in weights:
        assert loaded[name].float().std() > 0, f"{name} is constant: not initialised"


def test_comfyui_detects_tiny_sd15(comfy_sd, tiny_checkpoint, caplog):
    import comfy.model_base
    import comfy.supported_models
    model, clip, vae = load(comfy_sd, tiny_checkpoint("sd15"), caplog)
    assert type(model.model.model_config) is comfy.supported_models.SD15
    assert type(model.model) is comfy.model_base.BaseModel
    assert model.model.model_type == comfy.model_base.ModelType.EPS
    assert_text_encoders_hold_the_files_weights(model, clip, tiny_checkpoint("sd15"))
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a red house"), return_pooled=True)
    assert cond.shape == (1, 77, 768) and pooled.shape == (1, 768)
    image = vae.decode(torch.zeros(1, 4, 8, 8))
    assert image.shape == (1, 64, 64, 3) and torch.isfinite(image).all()


@pytest.mark.sdxl
def test_comfyui_detects_tiny_sdxl_with_both_text_encoders(comfy_sd, tiny_checkpoint, caplog):
    import comfy.model_base
    import comfy.supported_models
    model, clip, vae = load(comfy_sd, tiny_checkpoint("sdxl"), caplog)
    assert isinstance(model.model.model_config, comfy.supported_models.SDXL)
    assert type(model.model) is comfy.model_base.SDXL
    encoders = dict(clip.cond_stage_model.named_children())
    assert set(encoders) == {"clip_l", "clip_g"}
    assert_text_encoders_hold_the_files_weights(model, clip, tiny_checkpoint("sdxl"))
    assert any(k.startswith("clip_g.") for k in clip.cond_stage_model.state_dict())
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a red house"), return_pooled=True)
    assert cond.shape == (1, 77, 768 + 1280) and pooled.shape == (1, 1280)
    assert pooled.abs().sum() > 0


def test_same_seed_gives_the_same_bytes(tmp_path):
    a, b, c = tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "c.safetensors"
    build_checkpoint(a, "sd15", seed=3)
    build_checkpoint(b, "sd15", seed=3)
    build_checkpoint(c, "sd15", seed=4)
    assert file_sha256(a) == file_sha256(b)
    assert file_sha256(a) != file_sha256(c)
    assert not list(tmp_path.glob("*.partial")), "atomic write left a partial file"
