"""Faults during training on the shared machinery: a full disk (for real, under `ulimit -f`), stop signals, two runs
on one output folder, and user mistakes printed without a traceback. The real trainers under a stop signal and a
full disk are in test_styleforge.py, test_osasis_training.py and test_style_token_training.py, their user mistakes
in test_trainer_mistakes.py."""
import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from core.errors import UserError
from core.formats.atomic_files import DiskFullError, write_atomic
from devkit.paths import REPO_ROOT
from devkit.processes import file_size_limit
from trainers import cli, common
from trainers.common import Distributed
from trainers.precision import Precision
from trainers.run_lock import LOCK_NAME, FolderInUse, run_lock
from trainers.stop_signals import Stopped
from trainers.training_loop import TrainingLoop

LIMIT = 64 * 1024          # bytes any file may have in the limited child: the old files fit, the new ones do not

# Each writer the trainers use, first with a small payload (fits), then with a big one (does not fit).
WRITERS = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from core.formats.atomic_files import DiskFullError
    from core.formats.embedding_file import save_embedding
    from core.formats.lora_file import Component, write_lora
    from core.formats.osasis_style_file import OsasisStyle, save_osasis_style
    from core.formats.token_shards import write_shard
    from core.osasis.spn import StructurePreservingNetwork
    from trainers.common import save_checkpoint

    out, n = Path(sys.argv[1]), int(sys.argv[2])
    torch.manual_seed(n)
    big = lambda *shape: torch.randn(n, *shape)
    writers = {
        "checkpoint.pt": lambda: save_checkpoint(out, {"model": {"w": big(64)}, "step": n, "config": "{}"}),
        "embedding.safetensors": lambda: save_embedding({"clip_l": big(768)}, "sd15", out / "embedding.safetensors"),
        "lora.safetensors": lambda: write_lora({"w": big(64)}, out / "lora.safetensors", "sd15",
                                               [Component("style", "zwx", "style")], "base", "0" * 64, 4, 4.0, {}),
        "style.safetensors": lambda: save_osasis_style(OsasisStyle({"w": big(64)}, StructurePreservingNetwork(4),
                                                                   "sd15", 0.5, 50, "normal", 0.1),
                                                       out / "style.safetensors"),
        "tokens-r0-00000.safetensors": lambda: write_shard(out, 0, 0, {"clip_l": big(1, 64)}, {"a": {}}, {}, [1.0]),
    }
    messages = {}
    for name, write in writers.items():
        try:
            write()
        except DiskFullError as e:
            messages[name] = str(e)
    print(json.dumps(messages))
""")


def run_writers(out, rows: int, limit: int | None) -> dict:
    done = subprocess.run([sys.executable, "-c", WRITERS, str(out), str(rows)], cwd=REPO_ROOT, capture_output=True,
                          text=True, preexec_fn=file_size_limit(limit) if limit else None, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_write_past_the_file_size_limit_keeps_every_previous_file_and_names_the_space(tmp_path):
    assert run_writers(tmp_path, 1, None) == {}
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    messages = run_writers(tmp_path, 5000, LIMIT)
    assert sorted(messages) == sorted(n for n in before if n.endswith((".pt", ".safetensors"))), messages
    for name, message in messages.items():
        assert f"{tmp_path / name}: the file is larger than this process may write" in message, message
        assert f"the previous {name} is kept" in message and "The file-size limit (ulimit -f) is 64.0 KiB" in message
        assert "it needs " in message and " MiB" in message.split("it needs ")[1] and "free on the disk" in message
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "every previous file is whole, no partial"
    assert run_writers(tmp_path, 5000, None) == {}, "with room again, the same writes succeed"


def test_a_full_disk_names_the_space_free_and_needed(tmp_path, monkeypatch):
    """ENOSPC as the OS reports it (a real full disk needs a small file system this machine may not allow)."""
    def full(f):
        f.write(b"x" * 10)
        raise OSError(28, os.strerror(28))
    (tmp_path / "model.pt").write_bytes(b"old")
    with pytest.raises(DiskFullError) as raised:
        write_atomic(tmp_path / "model.pt", "checkpoint", full, 3 * 2**30)
    message = str(raised.value)
    assert "the disk is full" in message and "the previous model.pt is kept" in message
    assert "It needs 3.0 GiB and " in message and f"free in {tmp_path}: free some space" in message
    assert raised.value.exit_status == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"] and (tmp_path / "model.pt").read_bytes() == b"old"


# ---- the shared training loop: stop signals and a full disk ----------------------------------------------------
DATA = torch.randn(8, 4, generator=torch.Generator().manual_seed(0))
TARGET = DATA @ torch.tensor([1.0, -2.0, 0.5, 3.0])


def toy_run(out, steps: int, signals: dict[int, int] = {}, save_every: int = 2):
    """Train a linear model for `steps` (resuming from `out`); before step i, send this process signals[i]."""
    args = argparse.Namespace(output_dir=out, steps=steps, grad_accum=1, save_every=save_every, no_resume=False,
                              lr=0.1)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    out.mkdir(parents=True, exist_ok=True)
    loop = TrainingLoop(args, Distributed(), Precision.resolve("fp32", torch.device("cpu")),
                        torch.optim.Adam(model.parameters(), lr=args.lr), {"model": model})

    def step(i):
        if i in signals:
            os.kill(os.getpid(), signals[i])
        rows = torch.randperm(8, generator=torch.Generator().manual_seed(i))[:4]
        return loop.accumulated_step(lambda: (lambda loss: (loss, {"mse": loss.item()}))(
            (model(DATA[rows]).squeeze(1) - TARGET[rows]).pow(2).mean()))
    loop.run(steps, step, "toy")
    return model


def saved_step(out) -> int:
    return torch.load(out / common.CHECKPOINT_NAME, weights_only=True)["step"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_finishes_the_step_checkpoints_it_and_resumes_bit_identically(signum, tmp_path):
    with pytest.raises(Stopped) as raised:
        toy_run(tmp_path / "stopped", 8, {4: signum})
    assert raised.value.exit_status == 128 + signum
    assert f"after step 5 of 8; the checkpoint of step 5 is in {tmp_path / 'stopped'}" in str(raised.value)
    assert "Run the same command again to resume from step 5" in str(raised.value)
    assert saved_step(tmp_path / "stopped") == 5, "saved at the step the signal came in, not at --save-every"
    resumed, straight = toy_run(tmp_path / "stopped", 8), toy_run(tmp_path / "straight", 8)
    assert torch.equal(resumed.weight, straight.weight) and torch.equal(resumed.bias, straight.bias)
    assert signal.getsignal(signum) is not None and signal.getsignal(signal.SIGTERM) != signal.SIG_IGN


def test_a_second_signal_during_the_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save = torch.save

    def interrupted_save(obj, f, *a, **kw):
        f.write(b"PK\x03\x04 half a checkpoint")
        os.kill(os.getpid(), signal.SIGTERM)     # the handler raises here, inside the write
        save(obj, f, *a, **kw)
    toy_run(tmp_path, 4)
    before = (tmp_path / common.CHECKPOINT_NAME).read_bytes()
    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(Stopped, match="stopped at once by SIGTERM") as raised:
        toy_run(tmp_path, 8, {4: signal.SIGTERM})
    assert raised.value.exit_status == 143
    assert (tmp_path / common.CHECKPOINT_NAME).read_bytes() == before and saved_step(tmp_path) == 4
    assert not list(tmp_path.glob(".*partial")), "no partial file"


FULL_DISK_RUN = textwrap.dedent("""
    import sys
    from pathlib import Path
    sys.path.insert(0, "tests")
    from core.formats.atomic_files import DiskFullError
    from test_trainer_faults import toy_run
    try:
        toy_run(Path(sys.argv[1]), int(sys.argv[2]))
    except DiskFullError as e:
        print(e)
""")


def test_a_full_disk_during_training_stops_keeps_the_checkpoint_and_resumes_after_space_is_freed(tmp_path):
    def run(steps, limit=None):
        return subprocess.run([sys.executable, "-c", FULL_DISK_RUN, str(tmp_path / "run"), str(steps)], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300,
                              preexec_fn=file_size_limit(limit) if limit else None).stdout
    run(4)
    size = (tmp_path / "run" / common.CHECKPOINT_NAME).stat().st_size
    before = (tmp_path / "run" / common.CHECKPOINT_NAME).read_bytes()
    message = run(8, limit=size // 2)
    assert f"Could not write the checkpoint {tmp_path / 'run' / common.CHECKPOINT_NAME}" in message, message
    assert "The checkpoint of step 4 is kept: once there is space, run the same command again to resume from step 4"\
        in message
    assert (tmp_path / "run" / common.CHECKPOINT_NAME).read_bytes() == before
    assert not list((tmp_path / "run").glob(".*partial"))
    resumed, straight = toy_run(tmp_path / "run", 8), toy_run(tmp_path / "straight", 8)
    assert saved_step(tmp_path / "run") == 8 and torch.equal(resumed.weight, straight.weight)


# ---- one run per output folder -----------------------------------------------------------------------------------
HOLD_LOCK = "import sys, time; from trainers.run_lock import run_lock\nwith run_lock(sys.argv[1]):\n" \
            "    print('locked', flush=True); time.sleep(float(sys.argv[2]))"


def holder(folder, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), str(seconds)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "locked"
    return process


def fake_trainer(ran: list):
    def parse_args(argv):
        return argparse.Namespace(output_dir=argv[0], debug=False)
    return (lambda args: ran.append(args.output_dir)), parse_args


def test_a_second_run_on_a_live_runs_folder_refuses_naming_its_pid_and_start(tmp_path, capsys):
    live = holder(tmp_path, 60)
    try:
        ran = []
        assert cli.run(*fake_trainer(ran), [tmp_path]) == 2
        err = capsys.readouterr().err
        recorded = json.loads((tmp_path / LOCK_NAME).read_text())
        assert f"is being written by another training run (PID {live.pid} on " in err
        assert f"started {recorded['started']})" in err and "pass another --output-dir" in err
        assert ran == [] and "Traceback" not in err
    finally:
        live.kill()
        live.wait()


def test_a_lock_left_by_a_killed_run_is_taken_over_with_a_note(tmp_path, capsys):
    killed = holder(tmp_path, 60)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == killed.pid, "kill -9 left the lock file"
    ran = []
    assert cli.run(*fake_trainer(ran), [tmp_path]) == 0 and ran == [tmp_path]
    assert f"note: taking over {tmp_path / LOCK_NAME}: the run that held it (PID {killed.pid} on" in \
        capsys.readouterr().err
    assert not (tmp_path / LOCK_NAME).exists(), "a run that ends removes its lock"
    with run_lock(tmp_path) as mine, pytest.raises(FolderInUse, match=f"PID {mine['pid']} on"):
        with run_lock(tmp_path):
            pass


# ---- the command-line entry ------------------------------------------------------------------------------------
LOADING = "import argparse, sys, time; from trainers import cli\n" \
          "def main(args):\n    print('loading', flush=True); time.sleep(60)\n" \
          "sys.exit(cli.run(main, lambda argv: argparse.Namespace(output_dir=sys.argv[1], debug=False), []))"


def test_sigterm_before_the_steps_stops_at_once_with_143_and_frees_the_folder(tmp_path):
    process = subprocess.Popen([sys.executable, "-c", LOADING, str(tmp_path)], cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline().strip() == "loading"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and "error: stopped at once by SIGTERM" in err and "Traceback" not in err, err
    assert not (tmp_path / LOCK_NAME).exists()


def failing_trainer(error: Exception):
    def main(args):
        raise error
    return main, lambda argv: argparse.Namespace(output_dir=argv[0], debug="--debug" in argv)


def test_a_user_error_is_one_line_and_status_2_and_a_bug_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(cli.DEBUG_VARIABLE, raising=False)
    assert cli.run(*failing_trainer(UserError("The data folder x does not exist.")), [tmp_path]) == 2
    err = capsys.readouterr().err
    assert err.endswith("error: The data folder x does not exist.\n") and err.count("\n") == 1
    assert cli.run(*failing_trainer(UserError("shown with --debug")), [tmp_path, "--debug"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv(cli.DEBUG_VARIABLE, "1")
    assert cli.run(*failing_trainer(UserError("shown with the variable")), [tmp_path]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    with pytest.raises(ZeroDivisionError):
        cli.run(*failing_trainer(ZeroDivisionError("a bug")), [tmp_path])
    assert not (tmp_path / LOCK_NAME).exists()


# Where shipped code may call a raw writer, and why it is safe there.
RAW_WRITERS_ALLOWED = {
    ("core/formats/safe_files.py", "save_file("): "write_safetensors_atomic hands it to atomic_files.save_atomic",
    ("trainers/common.py", "torch.save("): "save_checkpoint hands it to atomic_files.write_atomic",
    ("core/evaluation/metric_inception.py", "torch.save("): "a temporary copy for torchmetrics, not a user's file",
    ("comfy_adapter/style_prompt.py", "save_file("): "a temporary embedding for ComfyUI's tokenizer, not a user's file",
    ("core/formats/atomic_files.py", "os.replace("): "the one rename",
}


def test_every_file_for_later_is_written_through_atomic_files():
    """A new writer of checkpoints, LoRAs, styles, shards or embeddings that bypasses core/formats/atomic_files.py
    would leave half a file on a full disk or a stop signal."""
    found = set()
    for folder in ("core", "trainers", "nodes", "comfy_adapter", "evaluation"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for call in ("save_file(", "torch.save(", "os.replace("):
                if call in text:
                    found.add((str(path.relative_to(REPO_ROOT)), call))
    assert found == set(RAW_WRITERS_ALLOWED), sorted(found ^ set(RAW_WRITERS_ALLOWED))
