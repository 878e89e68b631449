"""What reaches the terminal: the pipeline's own lines and anyone's errors. Everything else
(library INFO lines, warnings, MLflow's database chatter) goes to the run's log file only.

conf/hydra/job_logging/hnpipe.yaml and conf/hydra/hydra_logging/hnpipe.yaml put the
filters and the handler below into Hydra's logging; `route_library_output` makes the
libraries that print on their own (their own handlers, bars, warnings) go through it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline import redact

_LIBRARY_LOGGERS = ("mlflow", "alembic", "sqlalchemy.engine", "huey", "datasets", "huggingface_hub")


class OursAndErrors(logging.Filter):
    """Lets through records of the named loggers (and their children), and errors from anyone,
    except a library's error logged with its traceback (MLflow logs each failed database call so):
    that exception goes on to the pipeline's one error path, which prints it as one message, and
    the traceback is in the log file."""

    def __init__(self, ours: list[str], others_level: str = "ERROR"):
        super().__init__()
        self.ours = tuple(ours)
        self.others_level = logging.getLevelName(others_level)

    def filter(self, record: logging.LogRecord) -> bool:
        if any(record.name == name or record.name.startswith(name + ".") for name in self.ours):
            return True
        return record.levelno >= self.others_level and not record.exc_info


class Redacted(logging.Filter):
    """Masks secrets (pipeline.redact) in every record before a handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: the handler reports it, as logging does
            return True
        masked = redact.text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class BarSafeHandler(logging.StreamHandler):
    """Writes through tqdm, which clears a progress bar on the same stream and redraws it below."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:  # logging must never raise
            self.handleError(record)


def route_library_output() -> None:
    """Send the libraries' own output through the root logger (so to the log file, and to the
    terminal only if it is an error), and turn their progress bars off. Idempotent."""
    import datasets
    import transformers

    logging.captureWarnings(True)  # warnings.warn -> logger "py.warnings"
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    transformers.utils.logging.disable_progress_bar()  # "Loading weights"
    datasets.disable_progress_bars()
    import mlflow  # noqa: F401  its import attaches its own stderr handler, removed below

    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def log_file() -> Path | None:
    """The file the root logger writes to (the run's log file), if any."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return Path(handler.baseFilename)
    return None
