"""Errors a user can fix from the message alone, told apart from bugs.

A trainer prints a `UserError` as one line and exits with its `exit_status` (2, as argparse does for a bad command
line); any other exception is a bug and keeps its traceback (trainers/cli.py). The subclasses that are also a
built-in type keep `except ValueError` / `except FileNotFoundError` callers working.
"""


class UserError(Exception):
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
