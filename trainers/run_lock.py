"""One trainer per output folder: OUTPUT_DIR/.stylesmith-run.lock.

The file holds the running trainer's PID, host and start time (JSON), and the trainer holds an OS lock on it
(flock; a byte-range lock on Windows) for as long as it runs. The OS drops that lock when the process ends,
however it ends, so a lock file left by a killed run (kill -9, a reclaimed instance) is stale by construction:
the next run takes it over with a note naming the run that left it. A second run while the first is alive finds
the OS lock taken and refuses, naming the first run's PID and start time. A clean end removes the file.
"""
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from core.errors import UserError

LOCK_NAME = ".stylesmith-run.lock"
WINDOWS_LOCK_OFFSET = 1 << 30    # Windows locks are mandatory: lock a byte far past the text others must read


class FolderInUse(UserError):
    """Another live run writes this output folder."""


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:
        import msvcrt
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _holder(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace")
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def describe(holder: dict) -> str:
    return (f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}, started {holder.get('started', '?')}"
            if holder else "a run that recorded nothing")


def _acquire(path: Path) -> tuple[int, dict]:
    """(descriptor holding the OS lock on `path`, what the file held before); FolderInUse if a live run holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            holder = _holder(fd)
            os.close(fd)
            raise FolderInUse(f"{path.parent} is being written by another training run ({describe(holder)}). Wait "
                              "for it to finish or stop it, or pass another --output-dir.")
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:       # else the holder removed it between our open and our lock: lock the new file
            return fd, _holder(fd)
        os.close(fd)


@contextmanager
def run_lock(folder):
    """Hold OUTPUT_DIR's run lock while the block runs."""
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, left = _acquire(path)
    if left:
        print(f"note: taking over {path}: the run that held it ({describe(left)}) ended without releasing it "
              "(killed?); its finished files are kept.", file=sys.stderr)
    mine = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime())}
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(mine).encode())
    os.fsync(fd)
    try:
        yield mine
    finally:
        try:
            path.unlink(missing_ok=True)    # while still locked: a run waiting on this file then finds it gone
        except PermissionError:             # Windows: an open file cannot be removed
            os.close(fd)
            path.unlink(missing_ok=True)
        else:
            os.close(fd)
