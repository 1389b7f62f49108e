"""Start a trainer in a subprocess and kill -9 it the moment it has written a given file (resume tests)."""
import signal
import subprocess
import time
from pathlib import Path

from .paths import REPO_ROOT


def kill_when_written(command: list[str], path: Path, timeout: float = 300) -> None:
    """Run `command` from the repository root; SIGKILL it as soon as `path` exists (or at the timeout)."""
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not path.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()


def file_size_limit(limit_bytes: int):
    """A `preexec_fn` that caps every file the child writes at `limit_bytes` (ulimit -f) and ignores SIGXFSZ, so a
    write past the cap fails with EFBIG, as a write to a full disk fails with ENOSPC, instead of killing the child."""
    def apply() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, resource.RLIM_INFINITY))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    return apply


def signal_when_written(command: list[str], path: Path, signum: int, log: Path, timeout: float = 300) -> int:
    """Run `command` from the repository root, its stderr into `log`; send `signum` once as soon as `path` exists,
    then wait for the process to end by itself. Returns its exit status."""
    with open(log, "wb") as err:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signum)
        try:
            return process.wait(timeout=timeout)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
