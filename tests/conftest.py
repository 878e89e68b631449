"""Fixtures: a CLI runner with its own outputs and MLflow store per test, one stage cache per session,
and one finished run that the tests of its terminal output and of what MLflow kept share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import Cli

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
for _name in ("HNPIPE_PROGRESS", "HNPIPE_PROGRESS_EVERY"):  # tests choose how progress shows
    os.environ.pop(_name, None)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One stage cache for the session, so tests split and mine the same data once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cli(tmp_path, shared_cache) -> Cli:
    return Cli(tmp_path, shared_cache)


@pytest.fixture(scope="session")
def piped_run(tmp_path_factory, shared_cache):
    """(its Cli, the completed process, its MLflow run) of one small run with stderr piped, as in a
    log file or under SLURM: progress lines every 0.02 s (so 6 steps show some), the model logged
    as a single run does by default, system metrics on (sampled every second)."""
    cli = Cli(tmp_path_factory.mktemp("piped-run"), shared_cache)
    result = cli("k=2", "mlflow.log_model=null", "mlflow.log_system_metrics=true",
                 env={"HNPIPE_PROGRESS_EVERY": "0.02", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    return cli, result, run
