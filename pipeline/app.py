"""What one Hydra job does: check the config, then plan, skip (resume) or run.

Hydra's globals are read here and nowhere below: the driver gets the config and
the resolved hardware, the recorder the tags. Every way a job can end is one
paragraph on the terminal: bad input and a fault of the machine (a full disk, a
locked or damaged store: pipeline.faults) exit 2, Ctrl-C and SIGTERM exit 130 with
the run ended KILLED.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from pipeline import names, parallel, progress, redact, terminal
from pipeline.config.rules import validate
from pipeline.errors import PipelineError, exit_interrupted, reported
from pipeline.preflight import preflight
from pipeline.stages.stage import resolved
from pipeline.tracking import quiet_mlflow

log = logging.getLogger("pipeline")


def _hydra_tags() -> dict[str, str]:
    """What Hydra knows about this job: overrides, and sweep dir and job number in a multirun."""
    hc = HydraConfig.get()
    overrides = " ".join(redact.text(override) for override in hc.overrides.task)
    tags = {names.HYDRA_OVERRIDES: overrides or "(none)", names.HYDRA_OUTPUT_DIR: hc.runtime.output_dir}
    if _sweep_dir() is not None:
        tags |= {names.SWEEP_DIR: hc.sweep.dir, names.SWEEP_JOB: str(hc.job.num)}
    return tags


def _sweep_dir() -> Path | None:
    hc = HydraConfig.get()
    return Path(hc.sweep.dir) if hc.mode is not None and hc.mode.name == "MULTIRUN" else None


def _scrub_hydra_copies() -> None:
    """Hydra wrote the job's config and overrides (and a sweep's multirun.yaml) before any
    pipeline code ran: mask secrets there."""
    hc = HydraConfig.get()
    if hc.output_subdir is not None:
        redact.scrub_yaml_files(Path(hc.runtime.output_dir, hc.output_subdir))
    sweep_dir = _sweep_dir()
    if sweep_dir is not None and sweep_dir.is_dir():
        redact.scrub_yaml_files(sweep_dir)


def _run(cfg: DictConfig, hardware, tags: dict[str, str]) -> float | tuple[float, ...] | None:
    from pipeline import driver
    from pipeline.result import RunResult
    from pipeline.summary import summary
    from pipeline.tracking.provenance import environment_tags
    from pipeline.tracking.recorder import recording

    if not parallel.is_main():  # runs the same stages as process 0; records nothing
        driver.run(cfg, hardware, RunResult(Path(cfg.paths.run_dir)))
        return None
    log_file = terminal.log_file()
    # A sweep's jobs keep their model in their run dir only, unless asked: ~90 MB per MiniLM copy.
    log_model = cfg.mlflow.log_model if cfg.mlflow.log_model is not None else _sweep_dir() is None
    with recording(cfg, tags | environment_tags() | {names.PRESET: cfg.preset}, log_file) as recorder:
        log.info("run %s started in experiment %s; full log: %s", recorder.run_id, cfg.mlflow.experiment_name,
                 log_file)
        result = RunResult(Path(cfg.paths.run_dir), recorder)
        driver.run(cfg, hardware, result)
        recorder.finish(result, log_model)
        log.info(summary(result, recorder.run_id, recorder.experiment_id, cfg.mlflow, log_file))
    return objective(cfg, result.metrics)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float | tuple[float, ...]:
    """What the job returns to its sweeper: the `objectives` metrics of the run (one: a number, as
    Hydra's basic sweeper and a one-direction Optuna study take it; several: a tuple)."""
    missing = [name for name in cfg.objectives if name not in metrics]
    if missing:
        raise PipelineError(f"objectives: the run logged no metric {missing[0]!r} (it is recorded FINISHED; "
                            f"a sweep with valid objectives reuses it). Name metrics it logs, e.g. "
                            f"objectives=[test/ndcg_at_10,time/train_s]; it logged: {', '.join(sorted(metrics))}.")
    values = tuple(float(metrics[name]) for name in cfg.objectives)
    return values[0] if len(values) == 1 else values


def _finished_twin(cfg: DictConfig, tags: dict[str, str]) -> tuple[str, dict[str, float]] | None:
    """(run id, its metrics) of a FINISHED run of this config and code, in a resumed sweep;
    process 0 looks it up and every process of the job gets its answer."""
    from pipeline.tracking import sweeps

    twin = None
    if parallel.is_main() and cfg.resume and _sweep_dir() is not None:
        found = sweeps.finished_twin(cfg.mlflow, tags, HydraConfig.get().job.num)
        twin = (found.info.run_id, dict(found.data.metrics)) if found else None
    return parallel.broadcast(twin)


def _threads() -> int | None:
    """This process's share of the cores: a launcher's parallel jobs or processes split them."""
    from pipeline.hydra_ext import launch

    local = parallel.launched_local_world_size()
    if local > 1:
        return max(1, launch.cpu_count() // local)
    return launch.job_threads(HydraConfig.get().launcher)


def check(cfg: DictConfig):
    """What a job checks before any data, model or store is touched: the launch, every value of the
    config, and what the values point at; the resolved hardware."""
    parallel.check_launch(str(cfg.hardware.device))
    if parallel.world_size() > 1:
        parallel.check_agreement(resolved(cfg))
        if cfg.plan:
            raise PipelineError("plan=true prices a run from one process: run it without torchrun or "
                                "accelerate launch (the estimate is per process and step).")
    hardware = validate(cfg)
    preflight(cfg)
    return hardware


def _load_libraries() -> None:
    """Import what a job runs on (torch, sentence-transformers, MLflow; their output routed to the
    log) with the garbage collector paused, then freeze it: those ~675k objects live as long as
    the process, and collecting while they load cost 1.5-2.5 s of every start on 2 cores, and a
    full collection (accelerate's free_memory, at every training) 0.6-0.8 s; frozen, ~0. Frozen
    once per process: a launcher's worker runs several jobs."""
    first = not gc.get_freeze_count()
    if first:
        gc.disable()
    try:
        terminal.route_library_output()
        from pipeline import driver  # noqa: F401  the stages, and the libraries they import
    finally:
        if first:
            gc.freeze()
            gc.enable()


def _job(cfg: DictConfig) -> float | tuple[float, ...] | None:
    # The environment's documented overrides, read here once.
    progress.configure(os.environ.get("HNPIPE_PROGRESS"), os.environ.get("HNPIPE_PROGRESS_EVERY"))
    quiet_mlflow()
    hardware = check(cfg)
    _load_libraries()
    if cfg.plan:
        from pipeline import driver
        from pipeline.result import RunResult

        print(driver.run(cfg, hardware, RunResult(Path(cfg.paths.run_dir)), plan=True), flush=True)
        return None
    from pipeline.hydra_ext import launch
    from pipeline.signals import raise_keyboard_interrupt_on_sigterm
    from pipeline.tracking import sweeps
    from pipeline.tracking.provenance import code_tags, process_tags

    raise_keyboard_interrupt_on_sigterm()
    tags = _hydra_tags() | code_tags() | process_tags() | sweeps.job_tags(cfg, _sweep_dir(), parallel.world_size())
    twin = _finished_twin(cfg, tags)
    if twin is not None:
        log.info("skipped: this config already FINISHED as run %s with the same code "
                 "(resume=false re-runs it)", twin[0])
        return objective(cfg, twin[1])
    threads = _threads()
    if threads:
        launch.limit_threads(threads)
    return _run(cfg, hardware, tags)


def main(cfg: DictConfig) -> float | tuple[float, ...] | None:
    """Run (or plan, or skip as already finished) the job `cfg`; see the module docstring for exits."""
    _scrub_hydra_copies()
    with reported(cfg):
        try:
            return _job(cfg)
        except KeyboardInterrupt as exc:
            exit_interrupted(exc)
