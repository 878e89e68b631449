"""The MLflow store: a client, the experiment (created on first use), and params safe to log."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

from pipeline import faults, redact
from pipeline.errors import PipelineError
from pipeline.tracking_uri import sqlite_path

log = logging.getLogger(__name__)
_LOCK_NOTICE_S = 2.0
_LOCK_WAIT_S = 120.0


def client(tracking_uri: str):
    """The store's client. Opening a fresh sqlite file creates and migrates its tables, so it is
    opened under the store's lock: two processes migrating one file at once leave one dead in
    alembic. MLflow keeps the opened store per URI, so the process's later clients reuse it."""
    from mlflow import MlflowClient

    with _store_lock(tracking_uri):
        try:
            return MlflowClient(tracking_uri)
        except Exception as exc:  # a damaged or foreign database
            raise _unopenable(tracking_uri, exc) from None


def _unopenable(tracking_uri: str, exc: Exception) -> PipelineError:
    """A store that cannot be opened, reported and left as it is (never recreated or overwritten):
    what sqlite said of it where that is known (locked, damaged, read-only: pipeline.faults)."""
    path = sqlite_path(tracking_uri)
    fault = faults.explain(exc, tracking_uri, str(path.parent) if path else "")
    if fault is not None:
        return fault
    first_line = (redact.text(str(exc)).splitlines() or [""])[0][:300]
    return PipelineError(f"the MLflow store {redact.uri(tracking_uri)} could not be opened "
                         f"({type(exc).__name__}: {first_line}). It was left as it is; repair or move "
                         "it, or point MLFLOW_TRACKING_URI at another store.")


def flat_config(node, prefix: str = "") -> dict:
    """A resolved config (nested dicts) as flat `a.b.c` keys."""
    if not isinstance(node, dict):
        return {prefix[:-1]: node}
    out: dict = {}
    for key, value in node.items():
        out |= flat_config(value, f"{prefix}{key}.")
    return out


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as flat `a.b.c` params: secret keys left out, URI passwords masked."""
    flat = flat_config(OmegaConf.to_container(cfg, resolve=True))
    return {key: redact.uri(str(value)) for key, value in flat.items() if not redact.is_secret(key)}


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """A file lock beside an sqlite store: the first process to open a fresh file creates and
    migrates its tables while the others wait (processes racing there corrupt it). A wait says
    what it waits on after _LOCK_NOTICE_S, and gives up after _LOCK_WAIT_S: a holder stuck for
    minutes must not hang every run and sweep behind it in silence. The holder writes who it is
    into the lock file, for the waiters' message (the flock goes when its process does)."""
    from filelock import FileLock, Timeout

    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = Path(str(path) + ".lock")
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=_LOCK_NOTICE_S)
    except Timeout:
        log.warning("waiting for the MLflow store's lock %s, held by %s (at most %d s)", lock_path,
                    _holder(lock_path), _LOCK_WAIT_S)
        try:
            lock.acquire(timeout=_LOCK_WAIT_S - _LOCK_NOTICE_S)
        except Timeout:
            raise PipelineError(
                f"the MLflow store's lock {lock_path} was held for more than {_LOCK_WAIT_S:.0f} s by "
                f"{_holder(lock_path)}, which is creating the store or an experiment in it. Let that "
                "finish and run again, or stop that process if it is stuck (its lock goes with it).") from None
    try:
        with contextlib.suppress(OSError):  # who holds it is for the message only
            lock_path.write_text(f"process {os.getpid()} on host {socket.gethostname()} since "
                                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        yield
    finally:
        lock.release()


def _holder(lock_path: Path) -> str:
    """Who holds the lock, as its holder wrote it (a process that holds it without saying: unknown)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        return lock_path.read_text().strip() or "another process (unknown)"
    return "another process (unknown)"


def find_experiment(mlflow_client, tracking_uri: str, name: str):
    """The experiment called `name`, or None; a store that cannot be opened is reported, and left
    as it is (never recreated or overwritten)."""
    try:
        return mlflow_client.get_experiment_by_name(name)
    except Exception as exc:  # a damaged or foreign database, a server error
        raise _unopenable(tracking_uri, exc) from None


def experiment_id(mlflow_client, cfg: DictConfig) -> str:
    """The id of experiment cfg.experiment_name, created on first use (artifacts under outputs/
    for sqlite stores). A store that cannot be opened is reported and left as it is."""
    from mlflow.exceptions import MlflowException

    experiment = find_experiment(mlflow_client, cfg.tracking_uri, cfg.experiment_name)
    with _store_lock(cfg.tracking_uri):
        if experiment is not None:
            return experiment.experiment_id
        location = None
        if cfg.tracking_uri.startswith("sqlite:"):
            location = Path(cfg.artifact_root, cfg.experiment_name).as_uri()
        try:
            return mlflow_client.create_experiment(cfg.experiment_name, artifact_location=location)
        except MlflowException:  # created meanwhile by a process that holds no lock (another host)
            return mlflow_client.get_experiment_by_name(cfg.experiment_name).experiment_id
