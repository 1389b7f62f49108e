"""benchmarks.gpu_check on the CPU (--tiny): the GPU check's code path on the tiny models, and a broken run caught.

One run covers both: StyleForge and OSASIS train normally, while Multi-StyleForge gets a learning rate that turns its
weights and losses into inf/NaN and still exits 0, the failure only the checks can see.
"""
import json
import math
import subprocess
import sys

from benchmarks.gpu_check_graphs import EFFECT_TOLERANCE
from devkit.paths import REPO_ROOT

HEALTHY = ("styleforge-sd15-default", "osasis-sd15-default")
BROKEN = "multistyleforge-sd15-default"


def table_rows(stdout: str, names) -> dict[str, list[str]]:
    return {cells[0]: cells for cells in (line.split() for line in stdout.splitlines()) if cells and cells[0] in names}


def test_tiny_gpu_check_reports_every_run_and_fails_a_broken_one(tiny_models_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--tiny", "--device", "cpu", "--families", "sd15",
         "--precisions", "default", "--only", "styleforge", "multistyleforge", "osasis", "--work", str(tmp_path),
         "--trainer-args", "multistyleforge:--lr 1e30"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    rows = table_rows(done.stdout, (*HEALTHY, BROKEN))
    assert set(rows) == {*HEALTHY, BROKEN}, done.stdout[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    runs = {r["run"]: r for r in summary["runs"]}
    assert summary["devices"] == ["cpu"]

    for name in HEALTHY:
        run, row = runs[name], rows[name]
        assert run["ok"] and row[1] == "ok", run["problems"]
        seconds_per_step, rss_gib = float(row[2]), float(row[4])
        assert math.isfinite(seconds_per_step) and seconds_per_step > 0
        assert math.isfinite(rss_gib) and rss_gib > 0
        assert run["optimiser_steps"] == 2
        assert all(math.isfinite(loss) for loss in run["loss_first_last"])
        assert run["smallest_max_change"] > 0
        assert run["image_change"] > EFFECT_TOLERANCE
        assert run["workflows_ok"] == run["workflows_run"] >= 1
    assert {"styleforge-sd15", "osasis-stylise-sd15", "osasis-mixing-sweep-sd15",
            "osasis-text-manipulation-sd15"} <= set(summary["workflows_run"])

    broken = runs[BROKEN]
    assert not broken["ok"] and rows[BROKEN][1] == "FAILED"
    assert "non-finite loss" in broken["problems"]
    assert broken["workflows_run"] == 0, "a failed run's file must not go on to the workflows"


def detector_run(tmp_path, probe: dict):
    """A styleforge run as gpu_check records it after its trainer exited: finite losses, a finite LoRA file."""
    import torch
    from safetensors.torch import save_file
    from benchmarks.gpu_check_trainers import TRAINERS, Run, Setting
    out = tmp_path / "run"
    out.mkdir(parents=True)
    torch.save({"history": json.dumps({"loss": [[1, 0.5], [2, 0.4]]})}, out / "checkpoint.pt")
    save_file({"lora_unet_x.lora_up.weight": torch.ones(2, 2)}, str(out / "styleforge.safetensors"))
    return Run(TRAINERS["styleforge"], Setting("sd15", tmp_path / "base.safetensors", 64, 2, tmp_path / "enc.safetensors"),
               "default", out, status="ran", probe={"optimiser_steps": 2, "weights_finite": True, **probe})


def test_weights_that_did_not_move_fail_the_run(tmp_path):
    from benchmarks.gpu_check_trainers import check_trainer_run
    moved, still = detector_run(tmp_path / "a", {"smallest_max_change": 1e-6}), \
        detector_run(tmp_path / "b", {"smallest_max_change": 0.0})
    for run in (moved, still):
        check_trainer_run(run)
    assert moved.ok and moved.problems == [], moved.problems
    assert not still.ok and still.problems == ["weights did not move"]


class OneImageHost:
    """An in-process host stand-in: the saved IMAGE is all zeros, plus 0.5 where the graph loads the LoRA at a
    non-zero strength when `lora_changes_image`."""

    def __init__(self, lora_changes_image: bool):
        self.lora_changes_image = lora_changes_image

    def run(self, graph, outputs_of):
        import torch
        image = torch.zeros(1, 8, 8, 3)
        lora = [n["inputs"] for n in graph.values() if n["class_type"] == "StyleSmithStyleForgeLoraLoader"]
        if self.lora_changes_image and lora and lora[0]["strength_model"] != 0:
            image += 0.5
        return {outputs_of[0]: [image]}


def test_a_file_that_does_not_change_the_image_fails_the_run(tmp_path):
    from benchmarks.gpu_check import run_workflows
    from devkit.workflows import api_workflows
    for changes in (True, False):
        run = detector_run(tmp_path / str(changes), {"smallest_max_change": 1e-6})
        passed = run_workflows(OneImageHost(lora_changes_image=changes), run, api_workflows())
        if changes:
            assert run.ok and passed == {"styleforge-sd15"} and run.image_change == 0.5, run.problems
        else:
            assert not run.ok and passed == set() and run.image_change == 0.0
            assert run.problems == ["styleforge-sd15: the file does not change the image"]
