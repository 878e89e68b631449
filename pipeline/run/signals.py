"""SIGTERM (kill, SLURM preemption) unwinds like Ctrl-C, so runs end KILLED, not RUNNING."""

from __future__ import annotations

import signal
import threading


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_keyboard_interrupt_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():  # the only thread allowed to
        signal.signal(signal.SIGTERM, _interrupt)
