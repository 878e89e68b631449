"""Hydra callbacks: checks that must run before Hydra creates the run directory."""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.preflight import check_writable


class CheckOutputsDir(Callback):
    """Refuse an unwritable outputs dir with a message, not Hydra's mkdir traceback."""

    def _check(self, config: DictConfig) -> None:
        try:
            check_writable(config.paths.outputs_dir)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        self._check(config)
