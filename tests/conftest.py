"""Shared fixtures: real CLI runs in temp dirs, a real sqlite MLflow store per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)

# Small and fast: the static model, a few steps, a short max length.
FAST = ["model=static", "train.max_steps=6", "train.batch_size=16", "train.logging_steps=2",
        "eval=final", "eval.test_distractors=200", "data.max_rows=800"]


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One stage cache for the session, so tests split and mine the same data once."""
    return tmp_path_factory.mktemp("cache")


class Cli:
    """Runs `python -m pipeline` the way a user does, in its own outputs/ and MLflow store."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache
        self.tracking_uri = f"sqlite:///{root}/mlflow.db"

    def env(self, **extra: str) -> dict[str, str]:
        return os.environ | {"HNPIPE_ROOT": str(self.root), "MLFLOW_TRACKING_URI": self.tracking_uri,
                             "PYTHONUNBUFFERED": "1"} | extra

    def __call__(self, *overrides: str, fast: bool = True, timeout: int = 600,
                 env: dict | None = None) -> subprocess.CompletedProcess:
        args = [sys.executable, "-m", "pipeline", *(FAST if fast else []),
                f"paths.cache_dir={self.cache}", *overrides]
        return subprocess.run(args, cwd=ROOT, env=self.env(**(env or {})), capture_output=True,
                              text=True, timeout=timeout)

    def runs(self):
        """The job runs of the store, newest first (a sweep's parent run is left out)."""
        return [run for run in self.all_runs() if run.data.tags.get("sweep/parent") != "true"]

    def all_runs(self):
        """All runs of the store, sweep parent runs included, newest first."""
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        experiments = client.search_experiments()
        return client.search_runs([e.experiment_id for e in experiments], order_by=["start_time DESC"])

    def summary(self, run) -> dict:
        return json.loads(Path(run.data.tags["hydra/output_dir"], "run_summary.json").read_text())


@pytest.fixture
def cli(tmp_path, shared_cache) -> Cli:
    return Cli(tmp_path, shared_cache)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
