"""SIGTERM (kill, SLURM preemption) unwinds like Ctrl-C, so runs end KILLED, not RUNNING.

Python runs a signal handler between two bytecodes of the main thread, wherever it is; if
that is inside a weakref callback or a __del__, the handler's KeyboardInterrupt is printed
as "Exception ignored" and dropped, and the run would go on to the end. So the signal is
remembered: progress.Progress.update (every training step, every encoded batch) raises it
again, and the dropped one (or a hook's exception raised in its place) is not printed. A
second signal while the process is already stopping raises nothing: it would cut short the
ending of the run (kill -9 still stops it).

Hooks (on_interrupt) run on the first signal, before the KeyboardInterrupt: a sweep's parent
process uses one to stop its jobs' processes, which a launcher would otherwise kill -9; a process
of a multi-process run raises its lost peer's PeerLost instead, or nothing where it is stopping
for one already (pipeline.parallel).

Inside `deferred()` (a write to the MLflow store) the KeyboardInterrupt waits for the block's
end: raised in the middle of a commit, it left sqlite's write lock held, and the other jobs of
the sweep, which were ending their runs KILLED, waited on it until they were killed -9.

Inside `ending()` (a run being ended for an error already raised) a first signal runs the hooks
and raises nothing, as a second signal does: torchrun's SIGTERM, which follows a lost process's
PeerLost, cut the ending of the run short and left it RUNNING.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator

_received: list[int] = []  # the signal, once it came: the process is to stop
_hooks: list[Callable[[], bool | None]] = []
_raised: list[BaseException] = []  # what the handler raised: not printed where a finalizer drops it
_deferring: list[bool] = []  # one entry per open deferred() block
_held: list[BaseException] = []  # the stop, when the signal came inside a deferred() block
_ending: list[bool] = []  # one entry per open ending() block


def _interrupt(signum, frame) -> None:
    if _received:
        return  # already stopping; the checkpoints raise it again
    _received.append(signum)  # first: a signal while the hooks run (a sweep's waits) raises nothing
    stop: BaseException = KeyboardInterrupt(f"signal {signum}")
    try:
        if any([hook() for hook in _hooks]):
            _received.clear()  # a hook says this process is stopping already, for its own error:
            return  # no checkpoint raises this signal again
    except BaseException as raised:  # a hook's own stop (pipeline.parallel's PeerLost)
        stop = raised
    _raised.append(stop)
    if _ending:
        return
    if _deferring:
        _held.append(stop)
        return
    raise stop


def raise_if_interrupted() -> None:
    """Raise the signal's KeyboardInterrupt again (a checkpoint of long work)."""
    if _received:
        raise KeyboardInterrupt(f"signal {_received[0]}")


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the block whole: a signal that comes inside it raises its KeyboardInterrupt (or a hook's
    own stop) at the block's end (if the block ends without an error of its own)."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()
    if _held and not _deferring:
        raise _held.pop()


@contextlib.contextmanager
def ending() -> Iterator[None]:
    """Run the block (the ending of a run that failed) whole: a signal inside it raises nothing;
    the error being raised already stops the process."""
    _ending.append(True)
    try:
        yield
    finally:
        _ending.pop()


def on_interrupt(hook: Callable[[], bool | None]) -> None:
    """Run `hook` on the first SIGINT or SIGTERM, before this process unwinds. It may raise the
    stop to raise instead of KeyboardInterrupt, or return True: the process is stopping already
    for an error of its own, which the signal (a launcher's, that followed it) must not replace."""
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
