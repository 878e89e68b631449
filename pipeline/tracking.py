"""MLflow tracking: one run per pipeline run, ended FAILED or KILLED when it must be.

Only the runner calls this module; stages return their results instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterator

from omegaconf import DictConfig, OmegaConf

# Keys (or key fragments) whose values must never reach MLflow.
_SECRET_WORDS = ("token", "password", "secret", "api_key", "credential")


def flatten(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as flat `a.b.c` params, secrets left out."""
    out: dict[str, str] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            key = prefix[:-1]
            if not any(word in key.lower() for word in _SECRET_WORDS):
                out[key] = str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def _experiment_id(client, name: str, artifact_root: str, tracking_uri: str) -> str:
    """The experiment's id, created on first use (artifacts under outputs/ for sqlite stores)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:"):
        location = Path(artifact_root, name).as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel job
        return client.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def mlflow_run(cfg: DictConfig, tags: dict[str, str]) -> Iterator[object]:
    """Start a run; end it FINISHED, FAILED (error recorded as a tag) or KILLED."""
    import mlflow

    mlflow.set_tracking_uri(cfg.tracking_uri)
    client = mlflow.MlflowClient()
    experiment_id = _experiment_id(client, cfg.experiment_name, cfg.artifact_root, cfg.tracking_uri)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=cfg.run_name, tags=tags)
    try:
        yield run
    except KeyboardInterrupt:
        mlflow.set_tag("error", "interrupted (Ctrl-C or SIGTERM)")
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("error", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run("FAILED")
        raise
    else:
        mlflow.end_run("FINISHED")


def git_commit(root: str) -> str:
    """The checkout's HEAD commit, or 'unknown' outside a git checkout."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def environment_tags() -> dict[str, str]:
    """Library versions worth comparing runs by."""
    import sentence_transformers
    import torch
    import transformers

    return {"version/torch": torch.__version__,
            "version/transformers": transformers.__version__,
            "version/sentence_transformers": sentence_transformers.__version__,
            "host/cpu_count": str(os.cpu_count()),
            "host/torch_threads": str(torch.get_num_threads())}


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def raise_keyboard_interrupt_on_sigterm() -> None:
    """SIGTERM (kill, SLURM preemption) unwinds like Ctrl-C, so the run ends KILLED, not RUNNING."""
    if threading.current_thread() is threading.main_thread():  # the only thread allowed to
        signal.signal(signal.SIGTERM, _interrupt)
