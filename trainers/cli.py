"""The command-line entry every trainer's `__main__` goes through: `sys.exit(cli.run(main, parse_args))`.

- A mistake the user can fix (core.errors.UserError: a missing folder, a checkpoint from other settings, a full
  disk) is printed as one line, `<prog>: error: <message>`, as argparse prints a bad command line, and the exit
  status is the error's (2 for a mistake, 1 for a full disk). Its traceback is shown only with --debug or
  STYLESMITH_DEBUG=1.
- A stop signal (trainers/stop_signals.py, handled for the whole run) ends the run with its message and 128 + the
  signal number (130 for Ctrl-C, 143 for SIGTERM), the shell's convention.
- Any other exception is a bug: it keeps its traceback (exit status 1).
- While the trainer runs, OUTPUT_DIR is locked (trainers/run_lock.py), so a second run on it refuses.
"""
import os
import sys
import traceback
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

from core.errors import UserError

from .run_lock import run_lock
from .stop_signals import handling_stop_signals

DEBUG_VARIABLE = "STYLESMITH_DEBUG"


def debugging(args=None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def run(main: Callable, parse_args: Callable, argv: list[str] | None = None,
        locked_folder: Callable[[object], Path | None] = lambda args: args.output_dir) -> int:
    """Parse the command line, run `main(args)` holding the lock on `locked_folder(args)` (None: no lock), and
    return the exit status."""
    args = parse_args(argv)
    prog = Path(sys.argv[0]).name if argv is None else "trainer"
    folder = locked_folder(args) if int(os.environ.get("RANK", "0")) == 0 else None
    try:
        with handling_stop_signals(), (run_lock(folder) if folder is not None else nullcontext()):
            main(args)
    except UserError as e:
        if debugging(args):
            traceback.print_exc()
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.exit_status
    return 0
