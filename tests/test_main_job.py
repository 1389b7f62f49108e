"""The README's main job: bundled workflows headless, on the tiny models or a user's checkpoint."""
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.formats.checkpoint_family import checkpoint_family
from devkit.paths import REPO_ROOT
from devkit.run_workflows import use_checkpoint, workflow_families
from devkit.tiny_models import TINY_CHECKPOINTS, build_checkpoint
from devkit.workflows import api_workflows


def test_checkpoint_family_reads_only_the_header(tiny_checkpoint):
    assert checkpoint_family(tiny_checkpoint("sd15")) == "sd15"
    assert checkpoint_family(tiny_checkpoint("sdxl")) == "sdxl"


def test_checkpoint_family_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        checkpoint_family(tmp_path / "nope.safetensors")
    pickled = tmp_path / "model.ckpt"
    pickled.write_bytes(pickle.dumps({"state_dict": {}}))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        checkpoint_family(pickled)


def test_use_checkpoint_swaps_only_the_matching_family():
    api = next(iter(api_workflows().values()))
    families = workflow_families(api)
    assert families, "bundled workflows load a tiny checkpoint"
    family = sorted(families)[0]
    swapped = use_checkpoint(api, family, "mine.safetensors")
    loaders = [n for n in swapped.values() if n["class_type"] == "CheckpointLoaderSimple"]
    assert all(n["inputs"]["ckpt_name"] in ("mine.safetensors", *TINY_CHECKPOINTS.values()) for n in loaders)
    assert any(n["inputs"]["ckpt_name"] == "mine.safetensors" for n in loaders)
    assert api != swapped, "use_checkpoint must not mutate its input"


def run_main_job(*args) -> tuple[str, list[Path]]:
    done = subprocess.run([sys.executable, "-m", "devkit.run_workflows", "--only", "style-tokens-sd15", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    images = [Path(p) for p in re.findall(r"^\s+(/\S+\.png)$", done.stdout, flags=re.M)]
    assert images and all(p.is_file() for p in images), done.stdout
    return done.stdout, images


@pytest.mark.server
def test_main_job_runs_on_tiny_models_and_on_a_users_checkpoint(tmp_path):
    _, default_images = run_main_job()
    user_checkpoint = tmp_path / "my-own-model.safetensors"
    build_checkpoint(user_checkpoint, "sd15", seed=99)
    _, user_images = run_main_job("--checkpoint", str(user_checkpoint))
    default_pixels = np.asarray(Image.open(default_images[-1]), dtype=np.float32)
    user_pixels = np.asarray(Image.open(user_images[-1]), dtype=np.float32)
    assert default_pixels.shape == user_pixels.shape
    assert np.abs(default_pixels - user_pixels).max() > 0, "the user's checkpoint was not used"
