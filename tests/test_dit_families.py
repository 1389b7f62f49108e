"""The DiT families' foundation (Flux.2 Klein 4B, Z-Image): the registry tells them apart, old hosts skip them, the
tiny split files load through ComfyUI's stock loaders as their family, the stock text-to-image graph runs in the real
server, and the trainer-side split loader gives the stock CLIPTextEncode's conditioning."""
import gc
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from core import families
from core.formats.safe_files import WeightFileError, file_sha256, write_safetensors_atomic
from core.formats.text_encoder_options import METADATA_KEY, model_options_metadata, text_encoder_model_options
from devkit import paths
from devkit.server import ComfyServer
from devkit.tiny_dit_models import QWEN3_4B_OPTIONS, build_diffusion_model, build_vae_approx, stock_text_to_image

PROMPT = "a lighthouse on a cliff at dawn"
# Z-Image is 0.9B parameters: held as fp8 (stock UNETLoader's fp8_e4m3fn) it takes 0.9 GB instead of 3.6 GB in fp32.
UNET_WEIGHT_DTYPE = {"klein": "default", "zimage": "fp8_e4m3fn"}
SPLIT_LOADER_DTYPE = {"klein": None, "zimage": torch.float8_e4m3fn}
FAMILY_PARAMS = [pytest.param("klein", marks=pytest.mark.family("klein")),
                 pytest.param("zimage", marks=[pytest.mark.family("zimage"), pytest.mark.zimage])]


def test_registry_tells_the_dit_families_apart():
    F = families.FAMILIES
    # Flux.2 Dev and Klein are both ComfyUI's Flux2 config: the context width tells them apart.
    assert families.family_of_comfy_config({"Flux2", "BASE"}, 7680) is F["klein"]
    assert families.family_of_comfy_config({"Flux2", "BASE"}, 15360) is None
    assert families.family_of_comfy_config({"ZImage", "Lumina2", "BASE"}, 2560) is F["zimage"]
    assert families.family_of_comfy_config({"Lumina2", "BASE"}, 2304) is None     # original Lumina 2
    assert families.family_of_comfy_config({"SD15", "BASE"}, 768) is F["sd15"]
    # Both CLIPs hold Qwen3-4B: ComfyUI's text-encoder class tells them apart (both derive from SD1ClipModel).
    qwen = {"qwen3_4b": 2560}
    assert families.family_of_comfy_text_encoder({"Flux2TEModel_", "Flux2TEModel", "SD1ClipModel"}, qwen) is F["klein"]
    assert families.family_of_comfy_text_encoder({"ZImageTEModel_", "ZImageTEModel", "SD1ClipModel"}, qwen) is F["zimage"]
    assert families.family_of_comfy_text_encoder({"SD1ClipModel"}, {"clip_l": 768}) is F["sd15"]
    assert families.family_of_comfy_text_encoder({"SD2ClipModel", "SD1ClipModel"}, {"clip_h": 1024}) is None
    assert families.family_of_text_encoders(qwen) is None, "two families encode with Qwen3-4B: widths alone cannot tell"
    assert families.family_of_text_encoders({"clip_l": 768}) is F["sd15"]
    assert [f.key for f in families.families_using(qwen)] == ["klein", "zimage"]
    assert (F["klein"].latent_channels, F["klein"].latent_downscale, F["zimage"].latent_channels) == (128, 16, 16)
    assert families.SUPPORTED == "SD1.x, SDXL, Flux.2 Klein 4B, Z-Image and Flux.1"


def test_host_gate_names_the_family_and_both_versions():
    klein, zimage = families.FAMILIES["klein"], families.FAMILIES["zimage"]
    assert families.unsupported_on_host(klein, (0, 3, 75)) == ("Flux.2 Klein 4B needs ComfyUI 0.9.2 or newer; this "
                                                                "host is ComfyUI 0.3.75")
    assert families.unsupported_on_host(klein, (0, 9, 2)) is None
    assert families.unsupported_on_host(zimage, (0, 3, 64)) == ("Z-Image needs ComfyUI 0.3.75 or newer; this host is "
                                                                 "ComfyUI 0.3.64")
    assert families.unsupported_on_host(zimage, (0, 3, 75)) is None
    assert families.unsupported_on_host(families.FAMILIES["sd15"], (0, 3, 64)) is None


def test_family_marked_tests_skip_on_an_older_host_and_run_on_a_newer(tmp_path):
    """An inner pytest run with the plugin against a ComfyUI folder that declares 0.3.75: the Klein test is skipped
    with the reason, the Z-Image test runs; with 0.9.2 both run."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_gated.py").write_text(textwrap.dedent('''
        import pytest

        @pytest.mark.family("klein")
        def test_klein():
            pass

        @pytest.mark.family("zimage")
        def test_zimage():
            pass
    '''))
    outcomes = {}
    for version in ("0.3.75", "0.9.2"):
        host = tmp_path / f"ComfyUI-{version}"
        (host / "comfy").mkdir(parents=True)
        (host / "main.py").write_text("")
        (host / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
        run = subprocess.run([sys.executable, "-m", "pytest", "-p", "devkit.family_gate", "-rs", "-q",
                              "-p", "no:cacheprovider", str(tmp_path / "tests")],
                             cwd=tmp_path, capture_output=True, text=True,
                             env=dict(os.environ, COMFYUI_PATH=str(host), PYTHONPATH=str(paths.REPO_ROOT)))
        outcomes[version] = (run.returncode, run.stdout)
    code, out = outcomes["0.3.75"]
    assert code == 0, out
    assert "1 passed, 1 skipped" in out
    assert "SKIPPED [1] tests/test_gated.py:4: Flux.2 Klein 4B needs ComfyUI 0.9.2 or newer; this host is ComfyUI 0.3.75" in out
    code, out = outcomes["0.9.2"]
    assert code == 0 and "2 passed" in out, out


def test_text_encoder_options_round_trip_and_refuse_what_is_not_an_encoder_config(tmp_path):
    tensors = {"model.norm.weight": torch.ones(4)}
    recorded = tmp_path / "recorded.safetensors"
    write_safetensors_atomic(tensors, recorded, model_options_metadata(QWEN3_4B_OPTIONS))
    assert text_encoder_model_options(recorded) == QWEN3_4B_OPTIONS
    plain = tmp_path / "plain.safetensors"
    write_safetensors_atomic(tensors, plain, {"format": "pt"})
    assert text_encoder_model_options(plain) == {}
    broken = tmp_path / "broken.safetensors"
    write_safetensors_atomic(tensors, broken, {METADATA_KEY: "{not json"})
    with pytest.raises(WeightFileError, match="broken.safetensors: the text encoder's metadata cannot be read"):
        text_encoder_model_options(broken)
    device = tmp_path / "device.safetensors"
    write_safetensors_atomic(tensors, device, {METADATA_KEY: '{"load_device": {"type": "cuda"}}'})
    with pytest.raises(WeightFileError, match="only '<encoder>_model_config' entries, not 'load_device'"):
        text_encoder_model_options(device)
    with pytest.raises(ValueError, match="must map config field names to numbers"):
        model_options_metadata({"qwen3_4b_model_config": {"num_hidden_layers": [28]}})


def test_harness_pack_adds_the_recorded_options_and_leaves_other_files_alone(tmp_path):
    import comfy.sd
    from devkit.harness_pack import with_recorded_options
    calls = []

    def load_clip(ckpt_paths, embedding_directory=None, clip_type=None, model_options={}):
        calls.append(model_options)

    wrapped = with_recorded_options(load_clip)
    recorded, plain = tmp_path / "recorded.safetensors", tmp_path / "plain.safetensors"
    write_safetensors_atomic({"w": torch.ones(1)}, recorded, model_options_metadata(QWEN3_4B_OPTIONS))
    write_safetensors_atomic({"w": torch.ones(1)}, plain, {})
    wrapped([str(recorded)], None, "lumina2", {"load_device": "cpu"})
    wrapped(ckpt_paths=[str(plain)], model_options={"load_device": "cpu"})
    caller_wins = {"qwen3_4b_model_config": {"num_hidden_layers": 3}}
    wrapped([str(recorded)], model_options=caller_wins)
    assert calls == [{**QWEN3_4B_OPTIONS, "load_device": "cpu"}, {"load_device": "cpu"}, caller_wins]
    assert with_recorded_options(wrapped) is wrapped
    assert comfy.sd.load_clip.stylesmith_harness, "importing the harness pack wraps ComfyUI's load_clip"


@pytest.mark.family("klein")
def test_same_seed_gives_the_same_tiny_klein_bytes(tmp_path):
    hashes = {}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        folder = tmp_path / name
        build_diffusion_model(folder / "klein.safetensors", "klein", seed)
        build_vae_approx(folder, "taef2", seed)
        hashes[name] = [file_sha256(folder / f) for f in ("klein.safetensors", "taef2_encoder.safetensors",
                                                          "taef2_decoder.safetensors")]
    assert hashes["a"] == hashes["b"]
    assert all(x != y for x, y in zip(hashes["a"], hashes["c"]))


def free_models():
    import comfy.model_management
    gc.collect()
    comfy.model_management.unload_all_models()
    comfy.model_management.cleanup_models_gc()
    gc.collect()


@pytest.mark.hosts
@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_stock_loaders_and_the_trainer_split_loader_agree(comfy_in_process, tiny_split_model, tiny_models_dir, family):
    """UNETLoader, CLIPLoader (the family's type) and VAELoader load the tiny files as the family; the trainer-side
    loader, given the same files, finds the family and encodes a prompt exactly as stock CLIPTextEncode."""
    from comfy_adapter.families import family_of_clip, family_of_model, text_encoder_widths
    from comfy_adapter.split_files import open_split_files
    spec, expected = tiny_split_model(family), families.FAMILIES[family]
    stock = comfy_in_process.node_classes

    (model,) = stock["UNETLoader"]().load_unet(spec.diffusion_model, UNET_WEIGHT_DTYPE[family])
    assert type(model.model.model_config).__name__ in expected.comfy_model_configs
    assert family_of_model(model) is expected
    del model
    free_models()
    (clip,) = stock["CLIPLoader"]().load_clip(spec.text_encoder, expected.comfy_clip_type)
    assert family_of_clip(clip) is expected
    assert text_encoder_widths(clip) == expected.text_encoders
    ((stock_cond, extras),) = stock["CLIPTextEncode"]().encode(clip, PROMPT)[0]
    assert stock_cond.shape[-1] == expected.context_width and extras["pooled_output"] is None
    (vae,) = stock["VAELoader"]().load_vae(spec.vae)
    assert vae.latent_channels == expected.latent_channels
    image = vae.decode(torch.zeros(1, expected.latent_channels, 4, 4))
    assert image.shape == (1, 4 * expected.latent_downscale, 4 * expected.latent_downscale, 3)
    del clip, vae
    free_models()

    diffusion = open_split_files(tiny_models_dir / "diffusion_models" / spec.diffusion_model,
                                 [tiny_models_dir / "text_encoders" / spec.text_encoder],
                                 tiny_models_dir / "vae_approx" / spec.vae,   # as a trainer's --vae names it
                                 torch.device("cpu"), weight_dtype=SPLIT_LOADER_DTYPE[family])
    assert diffusion.family == family
    assert diffusion.vae.latent_channels == expected.latent_channels
    cond = diffusion.clip.encode_from_tokens(diffusion.clip.tokenize(PROMPT), return_dict=True)["cond"]
    assert torch.equal(cond, stock_cond)
    del diffusion
    free_models()


@pytest.fixture(scope="module")
def dit_server(tmp_path_factory, extra_model_paths):
    """A server of its own, so the DiT models it loads leave memory with it."""
    server = ComfyServer(paths.make_base_dir(tmp_path_factory.mktemp("dit-server-base")),
                         extra_model_paths=extra_model_paths).start()
    yield server
    server.stop()


@pytest.mark.server
@pytest.mark.hosts
@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_stock_text_to_image_graph_runs_headless(dit_server, tiny_split_model, family):
    tiny_split_model(family)
    result = dit_server.run(stock_text_to_image(family, PROMPT, seed=7, weight_dtype=UNET_WEIGHT_DTYPE[family]))
    assert result.status == "success", (result.error, dit_server.log_tail())
    (image,) = result.images
    assert image.shape == (64, 64, 3)
    assert np.isfinite(image).all()
    assert image.std() > 0.02, f"flat image (std {image.std():.4f})"
