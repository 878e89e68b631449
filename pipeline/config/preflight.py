"""Checks that need the disk or the network, run before any MLflow run or model exists.

The schema checks values; these check that what the values point at is there:
the data file and its columns, a fixed test set (read and checked whole), the
model, the tracking store, the output dir.
Each failure is a PipelineError that says what to do, in seconds rather than
after a 70 s network hang or halfway through a run.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.stages import sources, test_sets

TRACKING_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")
_TIMEOUT_S = 5


def check_model(cfg: DictConfig) -> None:
    """The base model can be had: a package, an existing directory, or a reachable hub id."""
    if cfg.kind != "hub" or os.path.isdir(cfg.id):
        return
    if cfg.id.startswith(("/", ".", "~")):
        raise PipelineError(f"model.id={cfg.id!r}: no such model directory.")
    from huggingface_hub import try_to_load_from_cache

    if try_to_load_from_cache(cfg.id, "modules.json") is not None:
        return
    hint = ("Use model=minilm or model=static (offline), or a local directory "
            "(model.id=/path/to/model).")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise PipelineError(f"model.id={cfg.id!r} is a hub id, but HF_HUB_OFFLINE=1 and it is not "
                            f"in the local Hugging Face cache. {hint} Online, set HF_HUB_OFFLINE=0.")
    from huggingface_hub import model_info

    try:
        model_info(cfg.id, timeout=_TIMEOUT_S)
    except Exception as exc:  # unreachable hub, unknown id, gated repo
        raise PipelineError(f"model.id={cfg.id!r} could not be found on the Hugging Face hub "
                            f"({type(exc).__name__}). Offline? {hint}") from exc


def check_tracking(cfg: DictConfig) -> None:
    """The tracking URI has a known scheme, and a tracking server answers."""
    uri = cfg.tracking_uri
    scheme = urlparse(uri).scheme.split("+")[0]
    if scheme not in TRACKING_SCHEMES:
        raise PipelineError(
            f"mlflow.tracking_uri={uri!r}: unknown scheme {scheme!r}; allowed: "
            f"{', '.join(TRACKING_SCHEMES)} (e.g. sqlite:////abs/path/mlflow.db or "
            "http://127.0.0.1:5000). MLflow >= 3.7 no longer accepts a ./mlruns file store.")
    if scheme in ("http", "https"):
        try:
            urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=_TIMEOUT_S).close()
        except (urllib.error.URLError, OSError) as exc:
            raise PipelineError(
                f"mlflow.tracking_uri={uri!r}: the MLflow server does not answer "
                f"({exc}). Start it (mlflow server --host 127.0.0.1 --port 5000), or unset "
                "MLFLOW_TRACKING_URI to use the local sqlite store.") from exc


def check_writable(outputs_dir: str) -> None:
    """Runs, cache and the sqlite store all go under outputs_dir."""
    path = Path(outputs_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise PipelineError(f"paths.outputs_dir={outputs_dir!r} is not writable ({exc.strerror}): "
                            "choose another with paths.outputs_dir=/writable/dir or "
                            "HNPIPE_ROOT.") from exc


def preflight(cfg: DictConfig) -> None:
    """Run every check (the outputs dir is checked earlier, by a Hydra callback)."""
    if cfg.data.source == "files":
        sources.check(cfg.data)
    if cfg.eval.test is not None:
        test_sets.check(cfg.eval.test)
    check_model(cfg.model)
    check_tracking(cfg.mlflow)
