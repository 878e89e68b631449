"""Whether a process still runs, as the reaper and a multi-process run's lost-peer check ask it."""

from __future__ import annotations


def alive(pid: int) -> bool:
    """Whether process `pid` runs. A zombie does not: it was killed, and its parent (a launcher,
    torchrun or joblib, that is still busy stopping the others) has not collected it yet."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
