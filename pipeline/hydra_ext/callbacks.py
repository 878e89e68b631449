"""Hydra callbacks (registered in conf/hydra/default.yaml): checks before Hydra makes a run
directory, and a sweep's MLflow parent run, opened before any job starts."""

from __future__ import annotations

import atexit
import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from pipeline import redact
from pipeline.config.preflight import check_writable, preflight
from pipeline.config.rules import validate
from pipeline.errors import PipelineError, reported
from pipeline.hydra_ext.launch import check_launcher
from pipeline.run.provenance import code_tags, process_tags
from pipeline.run.signals import raise_keyboard_interrupt_on_sigterm
from pipeline.terminal import route_library_output

log = logging.getLogger(__name__)


class CheckOutputsDir(Callback):
    """Refuse an unwritable outputs dir with a message, not Hydra's mkdir traceback."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        with reported():
            check_writable(config.paths.outputs_dir)

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with reported():
            check_writable(config.paths.outputs_dir)


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, expanded as the sweeper (hydra_plugins.hnpipe_sweeper) expands them."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.hnpipe_sweeper import DedupSweeper

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.params or {}).items()]
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().hydra.config_loader)
    (jobs,) = DedupSweeper.split_arguments(parser.parse_overrides(params + list(config.hydra.overrides.task)), None)
    return jobs


def check_every_job(config: DictConfig) -> None:
    """Refuse the whole sweep before its first job starts if any job's config is bad."""
    from hydra import compose

    jobs = sweep_jobs(config)
    swept = [o for o in dict.fromkeys(o for job in jobs for o in job) if sum(o in job for job in jobs) < len(jobs)]
    for overrides in jobs:
        job = compose(config.hydra.job.config_name, overrides=overrides)
        try:
            validate(job)
            preflight(job)
        except PipelineError as exc:
            named = " ".join(o for o in overrides if o in swept) or " ".join(overrides)
            raise PipelineError(f"sweep job {redact.text(named)}: {exc} No job was started.") from None


class SweepParentRun(Callback):
    """Opens the sweep's parent run at multirun start and ends it at multirun end (or at exit,
    FAILED or KILLED, when a job failed or the sweep was interrupted)."""

    def __init__(self) -> None:
        self.parent = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from pipeline.tracking import names, sweeps

        with reported():
            check_launcher(config.hydra.launcher)
            check_every_job(config)
        if config.get("plan"):  # plan mode prints and exits: no MLflow runs
            return
        raise_keyboard_interrupt_on_sigterm()
        route_library_output()  # MLflow creating its store: not for the terminal
        swept = dict(config.hydra.sweeper.params or {})
        swept |= dict(o.split("=", 1) for o in config.hydra.overrides.task if "=" in o)
        tags = {names.SWEEP_LAUNCHER: config.hydra.runtime.choices["hydra/launcher"],
                names.SWEEP_OVERRIDES: redact.text(" ".join(f"{k}={v}" for k, v in swept.items())),
                names.PRESET: str(config.preset)} | code_tags() | process_tags()
        self.parent = sweeps.open_parent(config.mlflow, Path(config.hydra.sweep.dir), tags)
        atexit.register(self._end_if_stopped)
        log.info("sweep %s: parent run %s in experiment %s", self.parent.sweep_id, self.parent.run_id,
                 config.mlflow.experiment_name)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from pipeline.tracking import sweeps

        if self.parent is not None:
            sweeps.finish_parent(self.parent)
            self.parent = None

    def _end_if_stopped(self) -> None:
        from pipeline.tracking import sweeps

        if self.parent is not None:
            sweeps.end_stopped_parent(self.parent)
