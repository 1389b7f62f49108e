"""benchmarks.gpu_check on Flux.2 Klein: the --tiny run on the CPU (training, then Klein's own workflow with and
without the result), the full-size recipe counted on the meta device (no weights made), and the peak-memory goals."""
import json
import math
import subprocess
import sys

import pytest

from devkit.paths import REPO_ROOT

pytestmark = pytest.mark.family("klein")


def test_tiny_klein_styleforge_runs_with_checkpointing_and_its_memory_goal(tiny_models_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--device", "cpu", "--families", "klein",
         "--precisions", "default", "--only", "styleforge", "styleforge-te", "--work", str(tmp_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    header, *rows = [line.split() for line in done.stdout.splitlines() if line.startswith(("run ", "styleforge"))]
    assert [row[0] for row in rows] == ["styleforge-klein-default"], done.stdout[-3000:]   # no text-encoder LoRA run
    cells = dict(zip([*header[:3], "GPU", "RSS", "process", "loss", "weights", "image", "workflows", "grad",
                      "goal"], rows[0]))
    assert cells["status"] == "ok" and cells["grad"] == "yes" and cells["goal"] == "<=16:n/a", rows[0]
    assert cells["workflows"] == "1/1" and float(cells["image"]) > 1e-5, rows[0]     # styleforge-klein, on the split files
    (run,) = json.loads((tmp_path / "summary.json").read_text())["runs"]
    assert run["ok"] and run["optimiser_steps"] == 2 and run["smallest_max_change"] > 0, run["problems"]
    assert run["gradient_checkpointing"] and run["resolution"] == 64
    assert json.loads((tmp_path / "summary.json").read_text())["workflows_run"] == ["styleforge-klein"]
    assert run["memory_goal_gib"] == 16 and run["memory_goal_met"] is None and run["peak_gpu_gib"] is None
    assert all(math.isfinite(loss) for loss in run["loss_first_last"])


def test_full_size_recipes_are_the_released_architectures_on_the_meta_device():
    """Klein 4B's transformer is 3.88B parameters, Z-Image's 6.15B, Qwen3-4B 4.02B (its model card: 4.0B); ComfyUI
    detects the Klein state dict's shapes as the released file's (hidden 3072, 24 heads, 5 + 20 blocks)."""
    from devkit.full_size_dit import diffusion_model, parameter_count, text_encoder
    klein, zimage, qwen = diffusion_model("klein"), diffusion_model("zimage"), text_encoder()
    import comfy.model_detection      # importable once diffusion_model has put ComfyUI on the path
    assert {p.device.type for m in (klein, zimage, qwen) for p in m.parameters()} == {"meta"}
    assert parameter_count(klein) == 3_875_544_576
    assert parameter_count(zimage) == 6_154_908_736
    assert parameter_count(qwen) == 4_022_468_096
    state = klein.state_dict()
    detected = comfy.model_detection.detect_unet_config(state, "")
    assert {k: detected[k] for k in ("image_model", "hidden_size", "num_heads", "depth", "depth_single_blocks",
                                     "context_in_dim", "in_channels")} == {
        "image_model": "flux2", "hidden_size": 3072, "num_heads": 24, "depth": 5, "depth_single_blocks": 20,
        "context_in_dim": 7680, "in_channels": 128}


@pytest.mark.parametrize("peak, cell, met", [(15.9, "<=16:met", True), (16.1, "<=16:MISSED", False),
                                             (None, "<=16:n/a", None)])
def test_peak_memory_is_set_against_its_goal(tmp_path, peak, cell, met):
    from benchmarks.gpu_check import goal_cell, memory_goal
    from benchmarks.gpu_check_trainers import TRAINERS, Run, Setting
    setting = Setting("klein", tmp_path / "m.safetensors", 1024, 2, tmp_path / "e.safetensors")
    run = Run(TRAINERS["styleforge"], setting, "bf16", tmp_path, status="ran", probe={"peak_gpu_gib": peak})
    assert memory_goal(run) == (16, met) and goal_cell(run) == cell
    other = Run(TRAINERS["stage1"], setting, "bf16", tmp_path, status="ran", probe={"peak_gpu_gib": peak})
    assert memory_goal(other) == (None, None) and goal_cell(other) == "-"
