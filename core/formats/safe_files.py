"""Open weight files safely: safetensors only, with errors that name the problem and the fix.

A pickle (.pt/.ckpt/.bin) can run code when loaded, so it is refused before any byte is
unpickled. Every StyleSmith loader goes through `read_safetensors`; where ComfyUI's own loader reads a
file (a CLIP vision model), `check_safetensors_file` vets it first.
"""
import os
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from ..errors import StyleSmithError

PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")  # protocol-2+ pickle, and torch.save's zip container
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle"}


class WeightFileError(StyleSmithError, ValueError):
    """A weight file is missing, unsafe, corrupt or of the wrong kind."""


def read_safetensors(path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Return (tensors on CPU, metadata) of a safetensors file; `what` names the file's role in errors."""
    path = _refuse_missing_or_pickle(path, what)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise corrupt_file_error(path, what, e) from e
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor.float()).all():
            raise WeightFileError(f"{path.name}: tensor {name} holds NaN or infinite values, so everything made with "
                                  f"this {what} would be NaN (often a training run that diverged). Train or export "
                                  "it again.")
    return tensors, metadata


def check_safetensors_file(path, what: str) -> Path:
    """Refuse a missing, pickled or corrupt file from its header alone, before another loader (ComfyUI's) reads it."""
    path = _refuse_missing_or_pickle(path, what)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            f.keys()
    except (SafetensorError, OSError, ValueError) as e:
        raise corrupt_file_error(path, what, e) from e
    return path


def corrupt_file_error(path: Path, what: str, cause: Exception) -> WeightFileError:
    return WeightFileError(f"{path.name} is not a valid safetensors {what} ({cause}; {os.path.getsize(path)} bytes): "
                           "the file is truncated or corrupt. Download or export it again.")


def _refuse_missing_or_pickle(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(f"The {what} file {path} does not exist. Put it in the right models folder "
                              "(see docs/formats.md) and refresh the node list.")
    with open(path, "rb") as f:
        head = f.read(9)
    if path.suffix.lower() in PICKLE_SUFFIXES or (head.startswith(PICKLE_MAGIC) and not _safetensors_head(head)):
        raise WeightFileError(f"{path.name} is a pickle file; StyleSmith refuses to load it because loading a "
                              f"pickle can run code. Save the {what} as .safetensors instead.")
    return path


@contextmanager
def reading_metadata(path, what: str):
    """Any error while a reader interprets a file's metadata (a missing key, malformed JSON, a value of the wrong
    type) becomes a WeightFileError that names the file."""
    try:
        yield
    except WeightFileError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        detail = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise WeightFileError(f"{Path(path).name}: the {what}'s metadata cannot be read ({detail}). The file is "
                              "damaged; export or train it again.") from e


def check_format(metadata: dict, path: Path, fmt: str, version: str, what: str, origin: str) -> None:
    """Refuse a file that is not StyleSmith format `fmt` at `version`; `origin` says where such files come from."""
    if metadata.get("stylesmith.format") != fmt:
        found = metadata.get("stylesmith.format", "no StyleSmith format tag")
        raise WeightFileError(f"{path.name} is not {what} ({found}). {origin}")
    if metadata.get("stylesmith.format_version") != version:
        raise WeightFileError(f"{path.name} is {what} format version {metadata.get('stylesmith.format_version')}; "
                              f"this StyleSmith reads version {version}. Update StyleSmith.")


def _safetensors_head(head: bytes) -> bool:
    """A safetensors file starts with its JSON header's length (u64, little-endian) and then `{`.

    The length's low byte can be 0x80, a pickle's first byte, so the magic alone cannot tell them apart.
    """
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 32


def write_safetensors_atomic(tensors: dict, path, metadata: dict[str, str]) -> None:
    """Write a safetensors file so that a crash never leaves a half-written file under `path`."""
    from safetensors.torch import save_file
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def copy_atomic(source, path) -> None:
    """Copy a file so that `path` is either absent, the old file or the whole new one, never half of it."""
    import shutil
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def file_sha256(path) -> str:
    """sha256 of a file, read in 16 MiB blocks (checkpoints are gigabytes)."""
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()
