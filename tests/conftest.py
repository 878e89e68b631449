"""Fixtures: a CLI runner with its own outputs and MLflow store per test, one stage cache per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import Cli

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One stage cache for the session, so tests split and mine the same data once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def cli(tmp_path, shared_cache) -> Cli:
    return Cli(tmp_path, shared_cache)
