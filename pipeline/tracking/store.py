"""The MLflow store: a client, the experiment (created on first use), and params safe to log."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

# Keys (or key fragments) whose values must never reach MLflow.
_SECRET_WORDS = ("token", "password", "secret", "api_key", "credential")


def client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


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


def experiment_id(mlflow_client, cfg: DictConfig) -> str:
    """The id of experiment cfg.experiment_name, created on first use (artifacts under outputs/
    for sqlite stores)."""
    from mlflow.exceptions import MlflowException

    experiment = mlflow_client.get_experiment_by_name(cfg.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if cfg.tracking_uri.startswith("sqlite:"):
        location = Path(cfg.artifact_root, cfg.experiment_name).as_uri()
    try:
        return mlflow_client.create_experiment(cfg.experiment_name, artifact_location=location)
    except MlflowException:  # created meanwhile by a parallel job
        return mlflow_client.get_experiment_by_name(cfg.experiment_name).experiment_id
