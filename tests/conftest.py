"""Fixtures: the real ComfyUI host (server and in-process), the tiny models, the pack installed.

The repository root goes at the END of sys.path and ComfyUI at the front, so `import nodes`
is always ComfyUI's module and never this pack's `nodes/` package (DESIGN §2).
"""
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

from devkit import paths  # noqa: E402
from devkit.server import ComfyServer  # noqa: E402
from devkit.paths import make_base_dir  # noqa: E402
from devkit.tiny_models import TINY_CHECKPOINTS  # noqa: E402

paths.put_comfyui_on_path()


@pytest.fixture(scope="session")
def tiny_models_dir() -> Path:
    models = paths.models_dir()
    missing = [n for n in TINY_CHECKPOINTS.values() if not (models / "checkpoints" / n).is_file()]
    if missing:
        pytest.fail(f"tiny models {missing} are missing from {models}: run scripts/setup.sh first")
    return models


@pytest.fixture(scope="session")
def extra_model_paths(tmp_path_factory, tiny_models_dir) -> Path:
    """An extra_model_paths.yaml that shows the host the tiny models, as a user's would."""
    config = tmp_path_factory.mktemp("config") / "extra_model_paths.yaml"
    config.write_text(f"stylesmith_tiny:\n  base_path: {tiny_models_dir}\n  checkpoints: checkpoints\n"
                      "  style_encoders: style_encoders\n")
    return config


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
    return InProcessHost(make_base_dir(tmp_path_factory.mktemp("in-process-base")), extra_model_paths)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_models_dir):
    def path(family: str) -> Path:
        return tiny_models_dir / "checkpoints" / TINY_CHECKPOINTS[family]
    return path
