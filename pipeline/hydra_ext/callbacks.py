"""Hydra callbacks (registered in conf/hydra/default.yaml): checks before Hydra makes a run
directory, and a sweep's MLflow parent run, opened before any job starts (and its report run
when the last job has finished, with report=true)."""

from __future__ import annotations

import atexit
import contextlib
import logging
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline import redact
from pipeline.config.rules import validate
from pipeline.errors import PipelineError, reported
from pipeline.hydra_ext.errors import describe
from pipeline.hydra_ext.launch import check_launcher
from pipeline.preflight import check_writable, preflight
from pipeline.signals import on_interrupt, raise_keyboard_interrupt_on_sigterm
from pipeline.terminal import route_library_output
from pipeline.tracking import quiet_mlflow
from pipeline.tracking.provenance import code_tags, process_tags

if TYPE_CHECKING:
    from pipeline.tracking.sweeps import ParentRun

log = logging.getLogger(__name__)


class DistributedRun(Callback):
    """Under a multi-process launch: start the process group before Hydra makes the run dir, and
    give every process process 0's run dir (each would resolve ${now:} for itself). Only process 0
    writes the .hydra/ copies and speaks on the terminal; the others log to pipeline.rank<N>.log
    and show only their errors. A sweep cannot itself run
    under a multi-process launcher: its jobs are launched as multi-process jobs instead.
    Registered first in conf/hydra/default.yaml, so no other callback opens the store before."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        from omegaconf import open_dict, read_write

        from pipeline import parallel

        if parallel.launched_world_size() <= 1:
            return
        parallel.init(str(config.hardware.device))
        run_dir = parallel.broadcast(str(config.hydra.run.dir) if parallel.is_main() else None)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = run_dir
            if not parallel.is_main():
                config.hydra.output_subdir = None
                logging_cfg = config.hydra.job_logging
                if "file" in logging_cfg.get("handlers", {}):
                    logging_cfg.handlers.file.filename = f"{run_dir}/pipeline.rank{parallel.rank()}.log"
                if "ours_and_errors" in logging_cfg.get("filters", {}):  # process 0 speaks for the run
                    logging_cfg.filters.ours_and_errors.ours = []

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from pipeline import parallel

        if parallel.launched_world_size() > 1:
            with reported():
                raise PipelineError(
                    "a sweep (-m) cannot run under torchrun or accelerate launch: every process would "
                    "run the whole sweep. Launch the sweep itself, and run each job on several "
                    "processes with hydra/launcher=submitit_slurm (or submitit_local) "
                    "hydra.launcher.tasks_per_node=N.")

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        """A job of a submitit sweep with several tasks: each task is one process of the job."""
        from pipeline import parallel

        if parallel.adopt_job_tasks():
            parallel.init(str(config.hardware.device))


class CheckOutputsDir(Callback):
    """Refuse an unwritable outputs dir, or folder of run dirs, with a message, not Hydra's mkdir
    traceback (Hydra makes the run dir right after this)."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        with reported():
            check_writable(config.paths.outputs_dir)
            check_writable(str(Path(config.hydra.run.dir).parent), "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        with reported():
            check_writable(config.paths.outputs_dir)
            check_writable(str(Path(config.hydra.sweep.dir).parent), "hydra.sweep.dir")


_LISTING = ("hydra_plugins.hnpipe_sweeper.DedupSweeper", "hydra._internal.core_plugins.basic_sweeper.BasicSweeper")


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """Each job's overrides, expanded as the sweeper (hydra_plugins.hnpipe_sweeper) expands them; for
    a sweeper that picks its jobs as it goes (Optuna), jobs that between them take every value of a
    choice and both ends of a range or interval (each other swept key at its first value)."""
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from hydra_plugins.hnpipe_sweeper import DedupSweeper

    params = [f"{key}={value}" for key, value in (config.hydra.sweeper.get("params") or {}).items()]
    hydra = GlobalHydra.instance().hydra
    assert hydra is not None  # a multirun is under way
    parser = OverridesParser.create(config_loader=hydra.config_loader)
    overrides = parser.parse_overrides(params + list(config.hydra.overrides.task))
    if config.hydra.sweeper._target_ in _LISTING:
        (jobs,) = DedupSweeper.split_arguments(overrides, None)
        return jobs
    values = [_ends(override) for override in overrides]
    first = [options[0] for options in values]
    return [first] + [first[:i] + [option] + first[i + 1:] for i, options in enumerate(values)
                      for option in options[1:]]


def _ends(override) -> list[str]:
    """The override at each value a search may take that could be refused: every value of a choice,
    the ends of a range or an interval; a fixed override as it is."""
    from hydra.core.override_parser.types import ChoiceSweep, Override, OverrideType, RangeSweep

    if not override.is_sweep_override():
        return [str(override.input_line)]
    value = override.value()
    if isinstance(value, ChoiceSweep):
        options = value.list
    elif isinstance(value, RangeSweep):
        options = [value.start, list(override.sweep_iterator())[-1]]
    else:
        options = [value.start, value.end]
    prefix = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++"}.get(override.type, "")
    return [f"{prefix}{override.get_key_element()}={Override._get_value_element_as_str(option)}"
            for option in options]


def check_objectives(config: DictConfig) -> None:
    """A sweeper with directions (Optuna) needs one `objectives` metric per direction, and runs that
    return them (a plan returns none)."""
    direction = config.hydra.sweeper.get("direction")
    if direction is None:
        return
    if config.plan:
        raise PipelineError("plan=true returns no objective for hydra.sweeper.direction to rank: price one "
                            "trial's config as a single run (without -m), or plan a listing sweep.")
    directions = list(direction) if OmegaConf.is_list(direction) else [direction]
    if len(directions) != len(config.objectives):
        raise PipelineError(
            f"objectives={list(config.objectives)} names {len(config.objectives)} metric(s) but "
            f"hydra.sweeper.direction={directions} has {len(directions)}: give one metric per direction, e.g. "
            "hydra.sweeper.direction=[maximize,minimize] objectives=[test/ndcg_at_10,time/train_s].")


def check_every_job(config: DictConfig) -> None:
    """Refuse the whole sweep before its first job starts if any job's config is bad: every job's
    values first, then what they point at (preflight builds the split entry of a good job, so a
    bad value in a later job must stop the sweep before that)."""
    from hydra import compose

    jobs = sweep_jobs(config)
    swept = [o for o in dict.fromkeys(o for job in jobs for o in job) if sum(o in job for job in jobs) < len(jobs)]
    composed = []
    for overrides in jobs:
        try:
            composed.append((overrides, compose(config.hydra.job.config_name, overrides=overrides)))
        except HydraException as exc:  # a callback's exception would be a warning: Hydra's words, as ours
            raise PipelineError(f"sweep job {_named(overrides, swept)}: {describe(exc)} No job was started.") from None
    for check in (validate, preflight):  # every job's values first: preflight reads files and stores
        for overrides, job in composed:
            try:
                check(job)
            except PipelineError as exc:
                raise PipelineError(f"sweep job {_named(overrides, swept)}: {exc} No job was started.") from None


def _named(overrides: list[str], swept: list[str]) -> str:
    """A sweep job by the values that set it apart."""
    return " ".join(o for o in overrides if o in swept) or " ".join(overrides)


class SweepParentRun(Callback):
    """Opens the sweep's parent run at multirun start and ends it at multirun end (or at exit,
    FAILED or KILLED, when a job failed or the sweep was interrupted); with report=true, then
    runs the report on the sweep."""

    def __init__(self) -> None:
        self.parent: ParentRun | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        from pipeline import names
        from pipeline.tracking import sweeps

        with reported():
            check_launcher(config.hydra.launcher)
            check_objectives(config)
            check_every_job(config)
        if config.get("plan"):  # plan mode prints and exits: no MLflow runs
            return
        raise_keyboard_interrupt_on_sigterm()
        quiet_mlflow()
        route_library_output()  # MLflow creating its store: not for the terminal
        swept = dict(config.hydra.sweeper.get("params") or {})
        swept |= dict(o.split("=", 1) for o in config.hydra.overrides.task if "=" in o)
        tags = {names.SWEEP_LAUNCHER: config.hydra.runtime.choices["hydra/launcher"],
                names.SWEEP_OVERRIDES: redact.text(" ".join(f"{k}={v}" for k, v in swept.items())),
                names.PRESET: str(config.preset)} | code_tags() | process_tags()
        with reported(config):  # the store locked, damaged or on a full disk: one message, no sweep
            self.parent = sweeps.open_parent(config.mlflow, Path(config.hydra.sweep.dir), tags,
                                             {str(key): redact.text(str(value)) for key, value in swept.items()})
        on_interrupt(self._stop_jobs)
        atexit.register(self._end_if_stopped)
        log.info("sweep %s: parent run %s in experiment %s", self.parent.sweep_id, self.parent.run_id,
                 config.mlflow.experiment_name)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        from pipeline.tracking import sweeps

        if self.parent is not None:
            with reported(config):
                sweeps.finish_parent(self.parent)
            if config.get("report"):
                _report(config, self.parent.sweep_id)
            self.parent = None

    def _stop_jobs(self) -> None:
        from pipeline.tracking import sweeps

        if self.parent is not None:
            with contextlib.suppress(Exception):  # in a signal handler: the store failing must not hide
                sweeps.stop_jobs(self.parent)  # the interrupt; the reaper ends what is left at exit

    def _end_if_stopped(self) -> None:
        from pipeline.tracking import sweeps

        if self.parent is not None:
            sweeps.end_stopped_parent(self.parent)


def _report(config: DictConfig, sweep_id: str) -> None:
    """`python -m pipeline.report SWEEP_ID` as a user would run it, on this sweep's store; the
    sweep has succeeded whatever the report does, so a failed report is a warning."""
    out = Path(config.paths.outputs_dir, "reports", sweep_id)
    command = [sys.executable, "-m", "pipeline.report", sweep_id, "--experiment",
               config.mlflow.experiment_name, "--tracking-uri", config.mlflow.tracking_uri, "--out", str(out)]
    if subprocess.run(command).returncode != 0:
        log.warning("the report on sweep %s failed (its message is above); run it again with: %s",
                    sweep_id, " ".join(command[1:]))
