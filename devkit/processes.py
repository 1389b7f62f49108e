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
