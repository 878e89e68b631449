"""The MLflow store: a client, the experiment (created on first use), and params safe to log."""

from __future__ import annotations

import contextlib
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pipeline import redact
from pipeline.errors import PipelineError


def client(tracking_uri: str):
    """The store's client. Opening a fresh sqlite file creates and migrates its tables, so it is
    opened under the store's lock: two processes migrating one file at once leave one dead in
    alembic. MLflow keeps the opened store per URI, so the process's later clients reuse it."""
    from mlflow import MlflowClient

    try:
        with _store_lock(tracking_uri):
            return MlflowClient(tracking_uri)
    except Exception as exc:  # a damaged or foreign database
        raise _unopenable(tracking_uri, exc) from None


def _unopenable(tracking_uri: str, exc: Exception) -> PipelineError:
    """A store that cannot be opened, reported and left as it is (never recreated or overwritten)."""
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


def _store_lock(tracking_uri: str):
    """A file lock beside an sqlite store: the first process to open a fresh file creates and
    migrates its tables while the others wait (processes racing there corrupt it)."""
    from filelock import FileLock

    if not tracking_uri.startswith("sqlite:") or ":///" not in tracking_uri:
        return contextlib.nullcontext()
    path = Path(tracking_uri.split(":///", 1)[1].split("?", 1)[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path) + ".lock")


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
