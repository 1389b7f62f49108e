"""Fixtures: the real ComfyUI host (server and in-process), the tiny models, the pack installed.

The repository root goes at the END of sys.path and ComfyUI at the front, so `import nodes`
is always ComfyUI's module and never this pack's `nodes/` package (DESIGN §2).
"""
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from devkit import paths  # noqa: E402
from devkit.server import ComfyServer  # noqa: E402
from devkit.paths import make_base_dir  # noqa: E402
from devkit.tiny_models import TINY_CHECKPOINTS  # noqa: E402
from comfy_adapter.host import import_comfy, put_comfyui_on_path  # noqa: E402

put_comfyui_on_path()

# `@pytest.mark.family("klein")`: skipped on hosts older than the family's ComfyUI support (devkit/family_gate.py).
pytest_plugins = ["devkit.family_gate"]

# One ComfyUI configuration per process (CPU, fp32 text encoder, this base directory): the
# in-process host and the trainers under test share it.
SESSION_BASE = make_base_dir(Path(tempfile.mkdtemp(prefix="stylesmith-tests-")) / "base")
import_comfy(base_directory=SESSION_BASE)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_BASE.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    models = paths.models_dir()
    missing = [n for n in TINY_CHECKPOINTS.values() if not (models / "checkpoints" / n).is_file()]
    if missing:
        pytest.fail(f"tiny models {missing} are missing from {models}: run scripts/setup.sh first")
    return models


MODEL_FOLDERS = ("checkpoints", "style_encoders", "loras", "osasis", "clip_vision", "diffusion_models", "text_encoders",
                 "vae_approx")


@pytest.fixture(scope="session")
def extra_model_paths(tmp_path_factory, tiny_models_dir) -> Path:
    """An extra_model_paths.yaml that shows the host the tiny models, as a user's would."""
    return paths.write_extra_model_paths(tmp_path_factory.mktemp("config") / "extra_model_paths.yaml",
                                         {kind: tiny_models_dir / kind for kind in MODEL_FOLDERS})


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory, extra_model_paths):
    base = make_base_dir(tmp_path_factory.mktemp("server-base"))
    server = ComfyServer(base, extra_model_paths=extra_model_paths).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def object_info(comfy_server) -> dict:
    return comfy_server.object_info()


@pytest.fixture(scope="session")
def comfy_in_process(tmp_path_factory, extra_model_paths):
    from devkit.in_process import InProcessHost
    return InProcessHost(SESSION_BASE, extra_model_paths)


@pytest.fixture(scope="session")
def osasis_images(tmp_path_factory) -> Path:
    """A one-shot OSASIS training set: style.png and a content/ folder with one image, 64 px."""
    from devkit.example_inputs import content_image, style_reference
    root = tmp_path_factory.mktemp("osasis-data")
    style_reference(64, seed=4).save(root / "style.png")
    (root / "content").mkdir()
    content_image(64).save(root / "content" / "0.png")
    return root


@pytest.fixture(scope="session")
def random_clip_vision(tiny_models_dir) -> Path:
    """A random full-size CLIP ViT-L/14 in models/clip_vision (built on first use: ComfyUI knows no smaller one)."""
    from devkit.random_clip_vision import ensure_random_clip_vision
    return ensure_random_clip_vision(tiny_models_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_models_dir):
    def path(family: str) -> Path:
        return tiny_models_dir / "checkpoints" / TINY_CHECKPOINTS[family]
    return path


@pytest.fixture(scope="session")
def tiny_split_model(tiny_models_dir):
    """The tiny split files of a DiT family (devkit/tiny_dit_models.py); use it in tests marked with that family."""
    from devkit.tiny_dit_models import SPLIT_MODELS

    def files(family: str):
        spec = SPLIT_MODELS[family]
        needed = [tiny_models_dir / "diffusion_models" / spec.diffusion_model,
                  *(tiny_models_dir / "text_encoders" / name for name in spec.text_encoders),
                  *(tiny_models_dir / "vae_approx" / f"{spec.vae}_{part}.safetensors" for part in ("encoder", "decoder"))]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            pytest.fail(f"tiny {family} files {missing} are missing: run scripts/setup.sh first")
        return spec
    return files
