"""StyleSmithError, the base of StyleSmith's own error types: each is shown by its class name alone.

ComfyUI's UI shows an error's type as `module.ClassName` unless the module is `builtins` (execution.full_type_name,
the same on every host we serve), and a custom node pack's modules carry the pack's folder name or path, so the UI
showed "ComfyUI-StyleSmith.core.formats.safe_files.WeightFileError". Python's tracebacks print the module the same
way. These classes therefore report `builtins` as their module and keep the real one in `home_module`; pickling
(DataLoader workers send the class of a worker's error to the main process) finds them there.

A trainer prints a `UserError` as one line and exits with its `exit_status` (2, as argparse does for a bad command
line); any other exception is a bug and keeps its traceback (trainers/cli.py). The subclasses that are also a
built-in type keep `except ValueError` / `except FileNotFoundError` callers working.
"""
import copyreg
import importlib


class _ShownByName(type):
    def __new__(mcls, name, bases, namespace):
        cls = super().__new__(mcls, name, bases, namespace)
        cls.home_module = cls.__module__
        cls.__module__ = "builtins"
        return cls


def _class_at_home(module: str, qualname: str) -> type:
    found = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    return found


copyreg.pickle(_ShownByName, lambda cls: (_class_at_home, (cls.home_module, cls.__qualname__)))


class StyleSmithError(Exception, metaclass=_ShownByName):
    """Base of StyleSmith's error types."""

class UserError(StyleSmithError):
    """A mistake in what the user gave (a file, a folder, a setting) or in the user's machine (a full disk)."""
    exit_status = 2


class UserValueError(UserError, ValueError):
    """A file or setting the user gave is of the wrong kind."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist, or is a folder where a file was expected (or the reverse)."""


def expect_path(path, kind: str, what: str, fix: str, error: type = UserFileNotFoundError):
    """`path` as a Path when it is a `kind` ("file" or "folder"); else `error` saying what is there instead.

    `what` names the path's role ("style image"), `fix` says what to pass ("pass the path of an image file")."""
    from pathlib import Path
    path = Path(path)
    is_kind = path.is_file() if kind == "file" else path.is_dir()
    if is_kind:
        return path
    if not path.exists():
        found = "does not exist"
    else:
        found = f"is a {'folder' if path.is_dir() else 'file'}, not a {kind}"
    raise error(f"The {what} {path} {found}: {fix}.")
