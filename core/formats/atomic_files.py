"""Every file StyleSmith writes for later (checkpoints, LoRAs, OSASIS styles, token shards, embeddings, style
encoders) goes through here: `path` holds the old file or the whole new one, never a part of it.

The new bytes go to `.NAME.partial` in the same folder (so the rename cannot cross file systems), are fsynced,
and replace `path` in one `os.replace`. Whatever stops the write (an exception, Ctrl-C, a full disk) removes
the partial file. A full disk (ENOSPC) or a file-size limit (EFBIG, `ulimit -f`) becomes a `DiskFullError`
naming the file, the bytes it needs and the bytes free.

The libraries report a failed write in different ways: Python's files raise OSError; torch.save raises a
RuntimeError that has lost the errno (so it writes through `_RecordingFile`, which keeps it); safetensors raises
a SafetensorError whose text ends in "(os error N)".
"""
import errno
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

from ..errors import UserError

NO_SPACE = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file is larger than this process may write"}
if hasattr(errno, "EDQUOT"):   # not on Windows
    NO_SPACE[errno.EDQUOT] = "the disk quota is used up"
RUST_OS_ERROR = re.compile(r"os error (\d+)")


class DiskFullError(UserError):
    """A file could not be written for want of space; the previous file is kept. Not a mistake in the command, so
    the exit status is 1, not argparse's 2."""
    exit_status = 1


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class _RecordingFile:
    """A binary file that remembers the OSError of a failed write: torch.save turns it into a RuntimeError
    without the errno."""

    def __init__(self, file: BinaryIO):
        self.file, self.error = file, None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()


def write_atomic(path, what: str, write: Callable[[BinaryIO], None], needed_bytes: int | None = None) -> Path:
    """Replace `path` with what `write(file)` writes to an open binary file; `what` names the file in errors
    ("checkpoint"), `needed_bytes` is the expected size, for the message when space runs out."""
    with _replacing(Path(path), what, needed_bytes) as (tmp, recorder):
        with open(tmp, "wb") as f:
            recording = _RecordingFile(f)
            recorder.append(recording)
            write(recording)
    return Path(path)


def save_atomic(path, what: str, save: Callable[[str], None], needed_bytes: int | None = None) -> Path:
    """Replace `path` with the file `save(temporary path)` writes (for writers that take a path: safetensors)."""
    with _replacing(Path(path), what, needed_bytes) as (tmp, _):
        save(str(tmp))
    return Path(path)


def write_text_atomic(path, what: str, text: str) -> Path:
    """Replace `path` with `text` (UTF-8)."""
    data = text.encode("utf-8")
    return write_atomic(path, what, lambda f: f.write(data), len(data))


@contextmanager
def _replacing(path: Path, what: str, needed_bytes: int | None) -> Iterator[tuple[Path, list]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    recorder: list[_RecordingFile] = []
    try:
        yield tmp, recorder
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        code = _errno_of(e, recorder)
        if code in NO_SPACE:
            raise DiskFullError(no_space_message(path, what, code, needed_bytes)) from e
        raise
    _fsync_folder(path.parent)


def _errno_of(error: BaseException, recorder: list) -> int | None:
    for e in (error, error.__cause__, error.__context__, *(r.error for r in recorder)):
        if isinstance(e, OSError) and e.errno is not None:
            return e.errno
    found = RUST_OS_ERROR.search(str(error))
    return int(found.group(1)) if found else None


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); folders cannot be opened so on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _size(n: int | None) -> str:
    if n is None:
        return "an unknown amount"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def no_space_message(path: Path, what: str, code: int, needed_bytes: int | None) -> str:
    free = shutil.disk_usage(path.parent).free
    kept = f"the previous {path.name} is kept" if path.exists() else f"no {path.name} was written"
    if code == errno.EFBIG:
        import resource   # POSIX only, like EFBIG from a file-size limit
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        shown = "unlimited" if limit == resource.RLIM_INFINITY else _size(limit)
        fix = (f"the file-size limit (ulimit -f) is {shown}; it needs {_size(needed_bytes)} "
               f"({_size(free)} free on the disk): raise the limit")
    else:
        fix = f"it needs {_size(needed_bytes)} and {_size(free)} is free in {path.parent}: free some space"
    return (f"Could not write the {what} {path}: {NO_SPACE[code]} ({os.strerror(code)}); {kept}. "
            f"{fix[0].upper()}{fix[1:]}.")
