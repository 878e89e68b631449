"""SIGTERM (kill, SLURM preemption) unwinds like Ctrl-C, so runs end KILLED, not RUNNING.

Python runs a signal handler between two bytecodes of the main thread, wherever it is; if
that is inside a weakref callback or a __del__, the handler's KeyboardInterrupt is printed
as "Exception ignored" and dropped, and the run would go on to the end. So the signal is
remembered: progress.Progress.update (every training step, every encoded batch) raises it
again, and the dropped one is not printed.
"""

from __future__ import annotations

import signal
import sys
import threading

_received: list[int] = []  # the SIGTERM, once it came: the process is to stop


def _interrupt(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def raise_if_interrupted() -> None:
    """Raise the SIGTERM's KeyboardInterrupt again (a checkpoint of long work)."""
    if _received:
        raise KeyboardInterrupt(f"signal {_received[0]}")


def _quiet(default_hook):
    def hook(unraisable) -> None:
        if _received and isinstance(unraisable.exc_value, KeyboardInterrupt):
            return  # the next checkpoint raises it again
        default_hook(unraisable)

    hook.quiet_sigterm = True
    return hook


def raise_keyboard_interrupt_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():  # the only thread allowed to
        signal.signal(signal.SIGTERM, _interrupt)
        if not getattr(sys.unraisablehook, "quiet_sigterm", False):
            sys.unraisablehook = _quiet(sys.unraisablehook)
