"""How far long work has got, shown the way the reader can take it.

On an interactive terminal: a tqdm bar. Anywhere else (a log file, SLURM's output,
a pipe, CI) tqdm would write its carriage-return redraws ten times a second, so
there: one log line every 30 seconds and one when the work ends, if it took a while.
The entry point may choose otherwise once (`configure`, from the documented
HNPIPE_PROGRESS=bar|lines|off and HNPIPE_PROGRESS_EVERY overrides). Stages use this
module; it knows nothing of MLflow or Hydra.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import Callable, Iterator, Sequence

from pipeline import signals
from pipeline.errors import refused

log = logging.getLogger("pipeline.progress")
MODES = ("bar", "lines", "off")
DEFAULT_EVERY_S = 30.0
# Work shorter than this gets no closing line: a small dev evaluation is not news.
QUIET_S = 5.0


_settings: dict = {"mode": None, "every": DEFAULT_EVERY_S}


def configure(mode_name: str | None = None, every: str | float | None = None) -> None:
    """How progress shows from now on: `mode_name` (bar, lines or off; None: chosen per stream) and a
    line every `every` seconds; a bad value is refused, named as the environment variable it comes from."""
    if mode_name is not None and mode_name not in MODES:
        raise refused("HNPIPE_PROGRESS", mode_name, f"one of {', '.join(MODES)}, or unset (a bar on a "
                      "terminal, lines elsewhere)")
    try:
        seconds = DEFAULT_EVERY_S if every is None else float(every)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise refused("HNPIPE_PROGRESS_EVERY", every, "a number of seconds above 0, e.g. 30")
    _settings.update(mode=mode_name, every=seconds)


def mode() -> str:
    """'bar' where a person watches a terminal, else 'lines', unless `configure` chose. Processes
    other than 0 of a multi-process run show none: process 0 speaks for the run."""
    from pipeline import parallel

    if not parallel.is_main():
        return "off"
    if _settings["mode"] is not None:
        return _settings["mode"]
    return "bar" if sys.stderr.isatty() and os.environ.get("TERM") != "dumb" else "lines"


def clock(seconds: float) -> str:
    """4.2 s, 3:07 or 1:02:03."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


def _rate(done: float, seconds: float, unit: str) -> str:
    if done <= 0 or seconds <= 0:
        return ""
    per_s = done / seconds
    return f"{per_s:,.1f} {unit}s/s" if per_s >= 1 else f"{seconds / done:,.2f} s/{unit}"


class Progress:
    """`total` units of work called `desc`: a bar, or periodic lines, updated as units finish."""

    def __init__(self, total: int, desc: str, unit: str = "item"):
        self.total, self.desc, self.unit = total, desc, unit
        self.mode = mode()
        self.every = _settings["every"]
        self.done = 0
        self.figures: dict[str, float] = {}
        self.start = self.last_line = time.monotonic()
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False,
                            file=sys.stderr)

    def note(self, **figures: float) -> None:
        """Figures shown beside the count (e.g. the latest loss)."""
        self.figures.update(figures)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in self.figures.items()}, refresh=False)

    def update(self, n: int = 1) -> None:
        signals.raise_if_interrupted()  # a SIGTERM dropped inside a callback still stops the work
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and time.monotonic() - self.last_line >= self.every:
            self.last_line = time.monotonic()
            log.info(self._line())

    def _figures(self) -> str:
        return "".join(f", {name} {value:.4g}" for name, value in self.figures.items())

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start
        left = (self.total - self.done) * elapsed / self.done if self.done else None
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        return (f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}s{share}{self._figures()}, "
                f"{_rate(self.done, elapsed, self.unit)}, {clock(elapsed)} elapsed, "
                f"ETA {clock(left) if left is not None else '?'}")

    def close(self, finished: bool = True) -> None:
        """Remove the bar; say how long the work took if it finished and took a while."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elapsed = time.monotonic() - self.start
        if finished and self.mode != "off" and elapsed >= QUIET_S:
            log.info("%s: %s %ss in %s (%s)%s", self.desc, f"{self.done:,}", self.unit, clock(elapsed),
                     _rate(self.done, elapsed, self.unit), self._figures())

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, *_) -> None:
        self.close(finished=kind is None)


def in_chunks(work: Callable[[Sequence], object], items: Sequence, size: int, desc: str,
              unit: str) -> list:
    """[work(chunk) for each chunk of `size` items], with progress counted in items."""
    results = []
    with Progress(len(items), desc, unit) as progress:
        for start in range(0, len(items), size):
            chunk = items[start:start + size]
            results.append(work(chunk))
            progress.update(len(chunk))
    return results


class Stage:
    """A stage in progress; `note` (e.g. 'cache hit') goes on its finishing line."""

    def __init__(self, name: str):
        self.name = name
        self.note = ""


@contextlib.contextmanager
def stage(name: str) -> Iterator[Stage]:
    """One line as stage `name` starts, one as it ends, with its wall time (and what stopped it).
    In a multi-process run, a collective of the stage that fails because another process died
    (torch's own, inside training, too) is that process's PeerLost (pipeline.parallel.peer_lost)."""
    from pipeline import parallel

    current = Stage(name)
    log.info("%s: started", name)
    start = time.monotonic()
    try:
        with parallel.peer_lost(f"the {name} stage ran"):
            yield current
    except BaseException as exc:
        log.info("%s: stopped after %s (%s)", name, clock(time.monotonic() - start), type(exc).__name__)
        raise
    note = f" ({current.note})" if current.note else ""
    log.info("%s: done in %s%s", name, clock(time.monotonic() - start), note)

