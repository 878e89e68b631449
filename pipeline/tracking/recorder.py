"""The recorder: one pipeline run as one MLflow run.

Opened before the first stage, it receives each figure and dataset the moment the
runner measures or makes it (it is the RunResult's sink), so the UI shows a run
while it goes and a run that fails keeps what it measured; it ends the run
FINISHED, FAILED (the error as a tag) or KILLED, logging the run's log file either
way, and on success logs the model and writes the run summary and artifacts.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Iterator, Mapping

from omegaconf import DictConfig

from pipeline import redact
from pipeline.names import ERROR, MODEL_URI, NOTE, SWEEP_KEYS
from pipeline.result import RunResult
from pipeline.signals import deferred, ending
from pipeline.tracking import data_inputs, describe, model_log, reaper, store

log = logging.getLogger(__name__)


class MlflowRecorder:
    """The active MLflow run, as a RunResult sink."""

    def __init__(self, active_run, cfg: DictConfig):
        self.run_id: str = active_run.info.run_id
        self.experiment_id: str = active_run.info.experiment_id
        self.cfg = cfg
        self.data_cfg = cfg.data
        self.fixed_test = cfg.eval.test  # where the test data came from, if not the split

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        import mlflow

        with deferred():  # a store write is not cut in the middle (pipeline.signals)
            mlflow.log_metrics(dict(metrics), step=step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        import mlflow

        with deferred():
            mlflow.set_tags(dict(tags))

    def log_input(self, context: str, rows, digest: str, data=None, source: str | None = None) -> None:
        with deferred():
            data_inputs.log_input(data if data is not None else self.data_cfg, context, rows, digest,
                                  self.fixed_test, source)

    def finish(self, result: RunResult, log_model: bool) -> dict:
        """Log the model (if `log_model`), write run_summary.json to the run dir and log it, with
        Hydra's config copies and the result's files (per-query scores), as artifacts; the run's
        description gains its test figures."""
        import mlflow

        with deferred():
            mlflow.set_tag(NOTE, describe.description(self.cfg, result.metrics))
        if log_model:
            result.add(tags=model_log.log_model(result.model_dir, self.run_id))
        summary = {"run_id": self.run_id, "experiment_id": self.experiment_id,
                   "model_dir": str(result.model_dir), "model_uri": result.tags.get(MODEL_URI),
                   "metrics": result.metrics, "tags": result.tags}
        path = result.run_dir / "run_summary.json"
        path.write_text(json.dumps(summary, indent=1))
        mlflow.log_artifact(str(path))
        if (result.run_dir / ".hydra").is_dir():
            mlflow.log_artifacts(str(result.run_dir / ".hydra"), "hydra")
        for file, folder in result.artifacts:
            mlflow.log_artifact(str(file), folder)
        return summary


def _log_file(path: Path | None) -> None:
    """The run's log file (library output included) as an artifact, as it stands now."""
    import mlflow

    if path is not None and path.is_file():
        mlflow.log_artifact(str(path))


def _end(status: str, error: str, log_file: Path | None, exc: BaseException, run_dir: Path) -> None:
    """End the active run `status`, `error` as its tag. If the store itself cannot be written (a
    full disk), a note on `exc` says so, which its one message ends with (the cause comes first),
    and the cause goes to the run dir if it fits there, where the reaper that ends this run once
    its process is gone finds it (pipeline.tracking.reaper.CAUSE_FILE)."""
    import mlflow

    run_id = mlflow.active_run().info.run_id
    try:
        with ending():  # a signal now (torchrun's, after a lost process) would leave the run RUNNING
            try:
                mlflow.set_tag(ERROR, redact.text(error)[:5000])
                with contextlib.suppress(Exception):  # the log file helps; ending the run matters
                    _log_file(log_file)
            finally:  # even when the store refuses: no longer this process's active run, so the next job starts
                mlflow.end_run(status)
    except Exception as failed:  # the original error matters more than this one
        with contextlib.suppress(OSError):
            (run_dir / reaper.CAUSE_FILE).write_text(json.dumps({"status": status, "error": redact.text(error)}))
        why = (redact.text(str(failed)).splitlines() or [""])[0][:200]
        exc.add_note(f"The run {run_id} could not be recorded {status} in MLflow ({why}): it stays RUNNING "
                     f"until the next run or python -m pipeline.report ends it {status}.")


@contextlib.contextmanager
def recording(cfg: DictConfig, tags: dict[str, str],
              log_file: Path | None = None) -> Iterator[MlflowRecorder]:
    """Start the run, named and described (pipeline.tracking.describe; params = the flattened
    config, secrets left out; system metrics if mlflow.log_system_metrics) after ending runs whose
    process is provably gone; end this one FINISHED, FAILED (with the error) or KILLED, with
    `log_file` as an artifact."""
    import mlflow

    client = store.client(cfg.mlflow.tracking_uri)  # first: a fresh store is migrated under its lock
    mlflow.set_tracking_uri(cfg.mlflow.tracking_uri)
    experiment = store.experiment_id(client, cfg.mlflow)
    name = describe.run_name(cfg, tags.get(SWEEP_KEYS, "").split())
    active = None
    try:
        with deferred():  # store writes, whole: a signal in them raises once the run is active (KILLED)
            active = mlflow.start_run(experiment_id=experiment, run_name=name, tags=tags,
                                      description=describe.description(cfg),
                                      log_system_metrics=cfg.mlflow.log_system_metrics)
            for run_id in reaper.reap(client, [experiment], f"run {active.info.run_id}"):
                log.warning("run %s was left RUNNING by a process that is gone: ended (its error tag says how)",
                            run_id)
            mlflow.log_params(store.flatten(cfg))
        yield MlflowRecorder(active, cfg)
    except KeyboardInterrupt as exc:
        if active is not None:
            _end("KILLED", "interrupted (Ctrl-C or SIGTERM)", log_file, exc, Path(cfg.paths.run_dir))
        raise
    except BaseException as exc:
        if active is not None:
            _end("FAILED", f"{type(exc).__name__}: {exc}", log_file, exc, Path(cfg.paths.run_dir))
        raise
    else:
        _log_file(log_file)
        mlflow.end_run("FINISHED")

