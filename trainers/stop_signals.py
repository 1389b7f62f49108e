"""SIGTERM and Ctrl-C (SIGINT) in a trainer: stop cleanly, keep what was finished, say how to resume.

A cloud instance being reclaimed sends SIGTERM and waits a little before SIGKILL; a user presses Ctrl-C. Both go
through one handler, installed for the whole run by trainers/cli.py (`handling_stop_signals`):
- outside the training steps (loading the model, writing results) the signal stops the run at once with `Stopped`;
  the files written so far are whole (core/formats/atomic_files.py removes a partial one);
- inside `finishing_steps()` (the training loop) the first signal only sets a flag: the loop finishes its step,
  writes the checkpoint and raises `Stopped` itself (`stop_requested`). A second signal stops at once, even in the
  middle of that write, which then leaves the previous checkpoint in place.
`Stopped` exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), the shell's convention.
"""
import signal
import sys
import threading
from contextlib import contextmanager

from core.errors import UserError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESUME_HINT = "Run the same command again to resume"

_state = {"requested": None, "finishing": 0}


class Stopped(UserError):
    """The run was stopped by a signal; the message says what was kept and how to resume."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.exit_status = 128 + signum


def signal_name(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


def _handle(signum, frame) -> None:
    if _state["finishing"] and _state["requested"] is None:
        _state["requested"] = signum
        print(f"\n{signal_name(signum)}: finishing this step, then writing a checkpoint (send it again to stop at "
              "once)", file=sys.stderr, flush=True)
        return
    raise Stopped(signum, f"stopped at once by {signal_name(signum)}; every file written before is whole, the "
                          f"checkpoint is the last one written. {RESUME_HINT} from it.")


@contextmanager
def handling_stop_signals():
    """Route SIGINT and SIGTERM to the handler above while the block runs (main thread only, where Python
    delivers signals), then restore the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in STOP_SIGNALS}
    _state["requested"] = None
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def finishing_steps():
    """While the block runs, a first stop signal is only recorded (see `stop_requested`). It installs the handler
    too, so a loop run without trainers/cli.py (a test calling `train`) behaves the same."""
    with handling_stop_signals():
        _state["finishing"] += 1
        try:
            yield
        finally:
            _state["finishing"] -= 1


def stop_requested() -> int | None:
    """The number of the stop signal received inside `finishing_steps`, or None."""
    return _state["requested"]
