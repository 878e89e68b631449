"""Sweeps as MLflow run groups: one parent run per multirun, each job a child run; resume.

The parent run is created once, before any job starts (by the Hydra callback in
pipeline.hydra_ext.callbacks): parallel jobs then never race to migrate a fresh
sqlite file or to create the experiment. Its id goes to <sweep dir>/sweep.json,
where every job finds it whatever the launcher (the jobs of a SLURM sweep share
that directory too).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from pipeline import names
from pipeline.config.inert import inert
from pipeline.tracking import describe, reaper, store
from pipeline.tracking.store import flat_config

PARENT_FILE = "sweep.json"
# Keys that say where results go, not what they are: left out of the config hash.
_UNHASHED = ("paths", "mlflow", "resume", "report", "objectives")
# How long an interrupted sweep waits for its jobs' processes to end their runs themselves.
_STOP_WAIT_S = 30.0


@dataclass
class ParentRun:
    client: Any  # mlflow.MlflowClient
    experiment_id: str
    run_id: str
    sweep_id: str


def open_parent(mlflow_cfg: DictConfig, sweep_dir: Path, tags: dict[str, str], swept: dict[str, str]) -> ParentRun:
    """Create the store, the experiment and the sweep's parent run (named after the preset or the
    `swept` overrides); write sweep.json for the jobs."""
    client = store.client(mlflow_cfg.tracking_uri)
    experiment = store.experiment_id(client, mlflow_cfg)
    sweep_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    reaper.reap(client, [experiment], f"sweep {sweep_id}")
    tags = tags | {names.SWEEP_ID: sweep_id, names.SWEEP_PARENT: "true", names.SWEEP_DIR: str(sweep_dir),
                   names.NOTE: f"Sweep {sweep_id} ({tags[names.SWEEP_OVERRIDES] or 'no overrides'}): its jobs are "
                               "the child runs; the report's table replaces this text when the report runs "
                               "(report=true, or python -m pipeline.report)."}
    run = client.create_run(experiment, run_name=describe.sweep_name(tags[names.PRESET], swept, sweep_id), tags=tags)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    keys = [key for key, value in swept.items() if describe.swept(str(value))]
    (sweep_dir / PARENT_FILE).write_text(json.dumps({"sweep_id": sweep_id, "parent_run_id": run.info.run_id,
                                                     "swept_keys": keys}))
    return ParentRun(client, experiment, run.info.run_id, sweep_id)


def finish_parent(parent: ParentRun) -> None:
    parent.client.set_terminated(parent.run_id, "FINISHED")


def _children(parent: ParentRun, running: bool = False) -> list:
    status = " and attributes.status = 'RUNNING'" if running else ""
    return parent.client.search_runs([parent.experiment_id], f"tags.{names.PARENT_RUN} = '{parent.run_id}'{status}")


def stop_jobs(parent: ParentRun, wait_s: float = _STOP_WAIT_S) -> None:
    """SIGTERM the processes of this sweep's RUNNING jobs that are this process's own (joblib's
    workers, which the launcher kills -9 as the sweep unwinds), and wait, bounded, for each to end
    its run KILLED itself. A job in this very process (basic launcher) unwinds with it."""
    import psutil

    own = {child.pid for child in psutil.Process().children(recursive=True)}
    pids = {int(run.data.tags.get(reaper.PID, "0")) for run in _children(parent, running=True)
            if run.data.tags.get(reaper.HOST) == socket.gethostname()} & own
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while pids and time.monotonic() < deadline:
        pids &= {int(run.data.tags.get(reaper.PID, "0")) for run in _children(parent, running=True)}
        time.sleep(0.2)


def end_stopped_parent(parent: ParentRun) -> None:
    """A sweep that stopped before its last job ended: its jobs' runs whose process is gone end
    KILLED (the reaper's proof), then the parent: KILLED if a job was, else FAILED."""
    reaper.reap(parent.client, [parent.experiment_id], f"sweep {parent.sweep_id} stopping")
    children = _children(parent)
    status = "KILLED" if any(c.info.status == "KILLED" for c in children) else "FAILED"
    parent.client.set_tag(parent.run_id, names.ERROR, "the sweep stopped before its last job ended")
    parent.client.set_terminated(parent.run_id, status)


def config_hash(cfg: DictConfig, world_size: int = 1) -> str:
    """Hash of the resolved job config, minus where its outputs go and the keys that change nothing
    in it (pipeline.config.inert): equal hash, equal run."""
    hashed = OmegaConf.masked_copy(cfg, [str(key) for key in cfg if key not in _UNHASHED])
    flat = flat_config(OmegaConf.to_container(hashed, resolve=True))
    content = {key: value for key, value in flat.items() if key not in inert(flat)}
    if world_size > 1:  # absent for one process, so single-process hashes stay what they were
        content["world_size"] = world_size
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def job_tags(cfg: DictConfig, sweep_dir: Path | None, world_size: int = 1) -> dict[str, str]:
    """The config hash (with the number of processes: a 2-process run is not a 1-process run's
    twin), and in a sweep (sweep_dir given) its id and parent, which make the run a child."""
    tags = {names.CONFIG_HASH: config_hash(cfg, world_size)}
    path = sweep_dir / PARENT_FILE if sweep_dir else None
    if path and path.is_file():
        parent = json.loads(path.read_text())
        tags |= {names.SWEEP_ID: parent["sweep_id"], names.PARENT_RUN: parent["parent_run_id"],
                 names.SWEEP_KEYS: " ".join(parent.get("swept_keys", []))}
    return tags


def finished_twin(mlflow_cfg: DictConfig, tags: dict[str, str], job_num: int):
    """The FINISHED run of the same config and the same code (tags config_hash and code_hash) in
    this experiment, if any; the current sweep's parent records it as `reused/<job num>`, so its
    report includes it."""
    client = store.client(mlflow_cfg.tracking_uri)
    experiment = client.get_experiment_by_name(mlflow_cfg.experiment_name)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        f"tags.{names.CONFIG_HASH} = '{tags[names.CONFIG_HASH]}' and "
        f"tags.{names.CODE_HASH} = '{tags[names.CODE_HASH]}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return None
    if names.PARENT_RUN in tags:
        client.set_tag(tags[names.PARENT_RUN], f"{names.REUSED}{job_num}", runs[0].info.run_id)
    return runs[0]
