"""Fixtures: a CLI runner with its own outputs and MLflow store per test, one stage cache per session,
and one finished run that the tests of its terminal output and of what MLflow kept share.

A test that runs the command line (it takes one of SLOW_FIXTURES) is marked `slow`, as are the
modules and tests marked so by hand (other processes, a transformer trained): `make check` runs
the rest, in-process (with ruff and mypy, 1.5-3.5 minutes on 2 cores, 2026-12-03/04); `make test` runs everything."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from helpers import ROOT, Cli

os.environ["HF_HUB_OFFLINE"] = "1"
# One thread per torch pool: two xdist workers on two cores, each with a pool per core, spin
# against each other (the same tests took 21 % longer, 50 % more CPU time). Set before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)
for _name in ("HNPIPE_PROGRESS", "HNPIPE_PROGRESS_EVERY"):  # tests choose how progress shows
    os.environ.pop(_name, None)


SLOW_FIXTURES = {"cli", "piped_run", "outcomes", "terminal_run"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One stage cache for the session, shared by pytest-xdist's workers (the cache claims an entry
    before building it, across processes), so the tests split and mine the same data once."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common base
    cache = root / "shared-cache"
    cache.mkdir(exist_ok=True)
    return cache


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow store, created and migrated once per worker (2 s each time otherwise)."""
    import mlflow

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def harvested_cache(shared_cache) -> Path:
    """The shared cache, holding the default data's harvest: processes that are not warm children
    (torchrun's, launchers') read it back instead of harvesting for 18 s; Cli.own_cache copies it."""
    import sys

    import warm

    done = warm.run([sys.executable, "tests/harvest_cache.py", str(shared_cache)], cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return shared_cache


@pytest.fixture
def cli(request, tmp_path, harvested_cache, empty_store) -> Cli:
    """A CLI in its own folder, on a copy of the empty store (on no store: `fresh_store`)."""
    if request.node.get_closest_marker("fresh_store") is None:
        shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return Cli(tmp_path, harvested_cache)


@pytest.fixture(scope="session")
def piped_run(tmp_path_factory, shared_cache):
    """(its Cli, the completed process, its MLflow run) of one small run with stderr piped, as in a
    log file or under SLURM: progress lines every 0.02 s (so 6 steps show some), the model logged
    as a single run does by default, system metrics on (sampled every second)."""
    cli = Cli(tmp_path_factory.mktemp("piped-run"), shared_cache)  # the store is created by the run itself
    result = cli("k=2", "mlflow.log_model=null", "mlflow.log_system_metrics=true",
                 env={"HNPIPE_PROGRESS_EVERY": "0.02", "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = cli.runs()
    return cli, result, run


def pytest_collection_finish(session) -> None:
    """Freeze what collecting imported (torch, sentence-transformers, MLflow: about 675k objects
    in a job, pipeline.app, which freezes them too; they live as long as the worker): every
    in-process training's full collection (accelerate's free_memory) then skips them."""
    import gc

    gc.freeze()
