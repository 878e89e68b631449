"""SIGTERM (kill, SLURM preemption) unwinds like Ctrl-C, so runs end KILLED, not RUNNING.

Python runs a signal handler between two bytecodes of the main thread, wherever it is; if
that is inside a weakref callback or a __del__, the handler's KeyboardInterrupt is printed
as "Exception ignored" and dropped, and the run would go on to the end. So the signal is
remembered: progress.Progress.update (every training step, every encoded batch) raises it
again, and the dropped one (or a hook's exception raised in its place) is not printed. A
second signal while the process is already stopping raises nothing: it would cut short the
ending of the run (kill -9 still stops it).

Hooks (on_interrupt) run on the first signal, before the KeyboardInterrupt: a sweep's parent
process uses one to stop its jobs' processes, which a launcher would otherwise kill -9.

Inside `deferred()` (a write to the MLflow store) the KeyboardInterrupt waits for the block's
end: raised in the middle of a commit, it left sqlite's write lock held, and the other jobs of
the sweep, which were ending their runs KILLED, waited on it until they were killed -9.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

_received: list[int] = []  # the signal, once it came: the process is to stop
_hooks: list[Callable[[], None]] = []
_raised: list[BaseException] = []  # what the handler raised: not printed where a finalizer drops it
_deferring: list[bool] = []  # one entry per open deferred() block
_held: list[int] = []  # the signal, when it came inside a deferred() block


def _interrupt(signum, frame) -> None:
    if _received:
        return  # already stopping; the checkpoints raise it again
    _received.append(signum)
    try:
        for hook in _hooks:
            hook()
        if _deferring:
            _held.append(signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")
    except BaseException as stop:  # this, or a hook's own (pipeline.parallel's PeerLost)
        _raised.append(stop)
        raise


def raise_if_interrupted() -> None:
    """Raise the signal's KeyboardInterrupt again (a checkpoint of long work)."""
    if _received:
        raise KeyboardInterrupt(f"signal {_received[0]}")


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a signal that comes inside it raises its KeyboardInterrupt at the
    block's end (if the block ends without an error of its own)."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    if _held and not _deferring:
        raise KeyboardInterrupt(f"signal {_held.pop()}")


def on_interrupt(hook: Callable[[], None]) -> None:
    """Run `hook` on the first SIGINT or SIGTERM, before this process unwinds."""
    _hooks.append(hook)


def _quiet(default_hook):
    def hook(unraisable) -> None:
        if _received and (isinstance(unraisable.exc_value, KeyboardInterrupt)
                          or any(unraisable.exc_value is stop for stop in _raised)):
            return  # the next checkpoint raises it again
        default_hook(unraisable)

    hook.quiet_sigterm = True
    return hook


def raise_keyboard_interrupt_on_sigterm() -> None:
    """SIGTERM and Ctrl-C (SIGINT) both raise KeyboardInterrupt once, after the hooks."""
    if threading.current_thread() is threading.main_thread():  # the only thread allowed to
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        if not getattr(sys.unraisablehook, "quiet_sigterm", False):
            sys.unraisablehook = _quiet(sys.unraisablehook)
