"""Sweeps as MLflow run groups: one parent run per multirun, each job a child run; resume.

`SweepParentRun` (a Hydra callback, registered in conf/hydra/default.yaml)
creates the store, the experiment and the parent run once, before any job
starts: parallel jobs then never race to migrate a fresh sqlite file or to
create the experiment. It writes the parent's id to <sweep dir>/sweep.json,
where every job finds it whatever the launcher (the jobs of a SLURM sweep
share that directory too).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import secrets
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from pipeline import launch, tracking
from pipeline.errors import PipelineError

log = logging.getLogger(__name__)

PARENT_FILE = "sweep.json"
HASH_TAG = "config_hash"
PARENT_TAG = "sweep/parent"
# Keys that say where results go, not what they are: left out of the config hash.
_UNHASHED = ("paths", "mlflow", "resume")


def _client(tracking_uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri)


class SweepParentRun(Callback):
    """Opens the sweep's parent run at multirun start and ends it at multirun end."""

    def __init__(self) -> None:
        self.client = None
        self.experiment_id: str | None = None
        self.run_id: str | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        try:
            launch.check_launcher(config.hydra.launcher)
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        if config.get("plan"):  # plan mode prints and exits: no MLflow runs
            return
        tracking.raise_keyboard_interrupt_on_sigterm()
        mlflow_cfg = config.mlflow
        self.client = _client(mlflow_cfg.tracking_uri)
        self.experiment_id = tracking._experiment_id(self.client, mlflow_cfg.experiment_name,
                                                mlflow_cfg.artifact_root, mlflow_cfg.tracking_uri)
        sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        sweep_dir = Path(config.hydra.sweep.dir)
        swept = dict(config.hydra.sweeper.params or {})
        swept |= dict(o.split("=", 1) for o in config.hydra.overrides.task if "=" in o)
        tags = {"sweep/id": sweep_id, PARENT_TAG: "true", "sweep/dir": str(sweep_dir),
                "sweep/launcher": config.hydra.runtime.choices["hydra/launcher"],
                "sweep/overrides": " ".join(f"{k}={v}" for k, v in swept.items()),
                "preset": str(config.preset), "git_commit": tracking.git_commit(config.paths.root_dir)}
        run = self.client.create_run(self.experiment_id, run_name=f"sweep-{sweep_id}", tags=tags)
        self.run_id = run.info.run_id
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PARENT_FILE).write_text(json.dumps(
            {"sweep_id": sweep_id, "parent_run_id": self.run_id}))
        atexit.register(self._end_if_stopped)
        log.info("sweep %s: parent run %s in experiment %s", sweep_id, self.run_id,
                 mlflow_cfg.experiment_name)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        if self.run_id is None:
            return
        self.client.set_terminated(self.run_id, "FINISHED")
        self.run_id = None

    def _end_if_stopped(self) -> None:
        """At exit before on_multirun_end (a job failed, or Ctrl-C/SIGTERM): FAILED or KILLED."""
        if self.run_id is None:
            return
        children = self.client.search_runs([self.experiment_id],
                                           f"tags.mlflow.parentRunId = '{self.run_id}'")
        status = "KILLED" if any(c.info.status == "KILLED" for c in children) else "FAILED"
        self.client.set_tag(self.run_id, "error", "the sweep stopped before its last job ended")
        self.client.set_terminated(self.run_id, status)


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved job config, minus where its outputs go: equal hash, equal run."""
    content = {key: (OmegaConf.to_container(cfg[key], resolve=True)
                     if OmegaConf.is_config(cfg[key]) else cfg[key])
               for key in cfg if key not in _UNHASHED}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _sweep_parent() -> dict | None:
    """The parent run this multirun job belongs to, or None outside a sweep."""
    hc = HydraConfig.get()
    if hc.mode.name != "MULTIRUN":
        return None
    path = Path(hc.sweep.dir, PARENT_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def job_tags(cfg: DictConfig) -> dict[str, str]:
    """The config hash, and in a sweep its id and parent (which makes the run a nested child)."""
    tags = {HASH_TAG: config_hash(cfg)}
    parent = _sweep_parent()
    if parent:
        tags |= {"sweep/id": parent["sweep_id"], "mlflow.parentRunId": parent["parent_run_id"]}
    return tags


def finished_twin(cfg: DictConfig, tags: dict[str, str]):
    """In a sweep with resume on: the FINISHED run of the same config in this experiment, if any.

    The current sweep's parent records it as `reused/<job num>`, so its report includes it.
    """
    if not cfg.resume or HydraConfig.get().mode.name != "MULTIRUN":
        return None
    client = _client(cfg.mlflow.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs([experiment.experiment_id],
                              f"tags.{HASH_TAG} = '{tags[HASH_TAG]}' and attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    if "mlflow.parentRunId" in tags:
        client.set_tag(tags["mlflow.parentRunId"], f"reused/{HydraConfig.get().job.num}",
                       runs[0].info.run_id)
    return runs[0]
