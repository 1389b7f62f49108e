"""Where scripts/setup.sh put things.

Everything lives under the state folder ($STYLESMITH_HOME, default `<repo>/.stylesmith`):
the venv, the ComfyUI host (unless $COMFYUI_PATH names another) and the base directory
whose custom_nodes/ holds this pack and whose models/ holds the tiny default models.
"""
import json
import os
from pathlib import Path

from comfy_adapter.host import locate_comfyui

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_FOLDER_NAME = "ComfyUI-StyleSmith"
# The harness's own node pack (devkit/harness_pack): stock text-encoder loaders build the shrunk tiny encoders.
HARNESS_PACK_FOLDER_NAME = "StyleSmith-Harness"
HARNESS_PACK_SOURCE = REPO_ROOT / "devkit" / "harness_pack"


def state_dir() -> Path:
    return Path(os.environ.get("STYLESMITH_HOME", REPO_ROOT / ".stylesmith")).resolve()


def comfyui_dir() -> Path:
    """The ComfyUI host: $COMFYUI_PATH, else the one scripts/setup.sh recorded (see comfy_adapter.host)."""
    return locate_comfyui()


def base_dir() -> Path:
    """The ComfyUI --base-directory prepared by scripts/setup.sh."""
    return state_dir() / "base"


def models_dir() -> Path:
    return base_dir() / "models"


def write_extra_model_paths(path: Path, folders: dict[str, Path]) -> Path:
    """A ComfyUI extra_model_paths.yaml that adds each models folder kind (checkpoints, loras, ...) at the given
    absolute path, after ComfyUI's own; as a user's file would."""
    lines = ["stylesmith:"] + [f"  {kind}: {json.dumps(str(folder))}" for kind, folder in folders.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_base_dir(root: Path, pack_source: Path = REPO_ROOT) -> Path:
    """A fresh ComfyUI --base-directory with the pack (or a copy of it) and the harness pack linked into
    custom_nodes."""
    (root / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for sub in ("input", "output", "user", "models"):
        (root / sub).mkdir(exist_ok=True)
    (root / "custom_nodes" / PACK_FOLDER_NAME).symlink_to(pack_source, target_is_directory=True)
    (root / "custom_nodes" / HARNESS_PACK_FOLDER_NAME).symlink_to(HARNESS_PACK_SOURCE, target_is_directory=True)
    from .example_inputs import write_example_inputs
    write_example_inputs(root / "input")
    return root
