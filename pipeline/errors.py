"""The one exception type users see as a message instead of a traceback, and where it becomes one."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Iterator, NoReturn

from omegaconf import DictConfig

from pipeline import redact

# Exit code of every refused input or environment problem (Hydra's own errors included).
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM, as a shell reports a SIGINT


class PipelineError(Exception):
    """Bad input or environment: the message says what is wrong and what to do. It is masked
    here (pipeline.redact), so a value it quotes never shows a secret wherever it is printed or tagged."""

    def __init__(self, message: str):
        super().__init__(redact.text(message))


# Bounded: where process 0 does not fail, the others exit after this anyway.
_LET_PROCESS_0_PRINT_S = 5.0


def exit_with_message(message: str) -> None:
    """Print `error: message` to stderr and exit with EXIT_BAD_INPUT (in a multi-process launch
    every process exits, and only process 0 prints: one message, not one per process)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"error: {redact.text(message)}", file=sys.stderr, flush=True)
    else:  # every process meets the same error: one exiting before process 0 has printed would
        time.sleep(_LET_PROCESS_0_PRINT_S)  # let the launcher stop process 0 first, message unprinted
    sys.exit(EXIT_BAD_INPUT)


def _noted(exc: BaseException, message: str) -> str:
    """`message` and what was noted on `exc` on its way up (a run the store could not end)."""
    return " ".join([message, *getattr(exc, "__notes__", ())])


def exit_interrupted(exc: KeyboardInterrupt) -> NoReturn:
    """The one line of a stopped job or sweep (pipeline.signals made SIGTERM a KeyboardInterrupt)."""
    print(_noted(exc, "interrupted (Ctrl-C or SIGTERM): the run, if one had started, is recorded KILLED."),
          file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def reported(cfg: DictConfig | None = None) -> Iterator[None]:
    """Turn a PipelineError raised inside the block into one printed paragraph and exit 2; with the
    job's `cfg`, a fault of the machine too (a full disk, a locked or damaged store: pipeline.faults)."""
    try:
        yield
    except PipelineError as exc:
        exit_with_message(_noted(exc, str(exc)))
    except Exception as exc:
        from pipeline import faults

        fault = faults.explain(exc, cfg.mlflow.tracking_uri, cfg.paths.outputs_dir) if cfg is not None else None
        if fault is None:
            raise
        exit_with_message(_noted(exc, str(fault)))


def refused(key: str, value: object, allowed: str, hint: str = "") -> PipelineError:
    """The one shape of a refused value: the key, the value, what is allowed, what to do."""
    return PipelineError(f"{key}={value!r} is not allowed: {allowed}.{' ' + hint if hint else ''}")
