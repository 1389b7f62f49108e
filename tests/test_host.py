"""The real ComfyUI server: the pack imports, a broken pack is reported, the harness works."""
import shutil

import numpy as np
import pytest

from devkit import paths
from devkit.paths import REPO_ROOT, make_base_dir
from devkit.server import ComfyServer, HostError


pytestmark = [pytest.mark.server, pytest.mark.hosts]


def test_pack_imports_without_error(comfy_server):
    times = comfy_server.import_times()
    ours = {p: v for p, v in times.items() if p.endswith(paths.PACK_FOLDER_NAME)}
    assert len(ours) == 1, f"the pack is not in ComfyUI's import-time list: {times}"
    (seconds, ok), = ours.values()
    assert ok, comfy_server.log_tail()
    assert f"Cannot import {comfy_server.base_dir}" not in comfy_server.log_text()
    assert seconds < 1.0, f"pack import took {seconds} s: import heavy libraries lazily"


def test_broken_pack_fails_the_harness_with_the_log_excerpt(tmp_path, extra_model_paths):
    broken = tmp_path / "broken-pack"
    shutil.copytree(REPO_ROOT, broken, ignore=shutil.ignore_patterns(".stylesmith", ".git", "__pycache__"))
    (broken / "__init__.py").write_text("raise RuntimeError('deliberately broken StyleSmith copy')\n")
    server = ComfyServer(make_base_dir(tmp_path / "base", pack_source=broken), extra_model_paths=extra_model_paths)
    with pytest.raises(HostError) as excinfo:
        server.start()
    message = str(excinfo.value)
    assert "IMPORT FAILED" in message
    assert "deliberately broken StyleSmith copy" in message
    assert server.process.poll() is not None, "the harness must stop the server it started"


def test_validation_errors_come_back_as_data(comfy_server):
    result = comfy_server.run({"1": {"class_type": "NoSuchNode", "inputs": {}}})
    assert result.status == "error"
    assert "NoSuchNode" in result.error["error"]["message"]


def test_execution_errors_come_back_as_data_and_the_server_serves_on(comfy_server):
    checkpoints = comfy_server.base_dir / "models" / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    (checkpoints / "corrupt.safetensors").write_bytes(b"this is not a safetensors file")
    decode = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "corrupt.safetensors"}},
              "2": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
              "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
              "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}
    bad = comfy_server.run(decode)
    assert bad.status == "error"
    assert bad.error["node_type"] == "CheckpointLoaderSimple"
    assert "deserializing header" in bad.error["exception_message"]
    blank = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    good = comfy_server.run(blank)
    assert good.status == "success"
    assert len(good.images) == 1 and good.images[0].shape == (8, 8, 3)
    assert np.all(good.images[0] == 0.0)


def test_a_server_that_dies_mid_prompt_fails_the_harness_with_its_log(tmp_path, extra_model_paths):
    server = ComfyServer(make_base_dir(tmp_path / "base"), extra_model_paths=extra_model_paths).start()
    try:
        blank = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                 "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
        prompt_id, invalid = server.queue(blank)
        assert invalid is None, invalid
        server.process.kill()
        server.process.wait()
        with pytest.raises(HostError, match=f"ComfyUI died while running {prompt_id}") as excinfo:
            server.wait(prompt_id)
        assert "ComfyUI log (tail)" in str(excinfo.value)
    finally:
        server.stop()
