"""Runs left RUNNING by a process that is provably gone end KILLED, saying how that was found.

kill -9, a crash of the machine or a lost node leave an MLflow run RUNNING forever:
its process could not end it. Every run records host, boot, pid, start time and
SLURM job (pipeline.tracking.provenance.process_tags); the pipeline and the report then
end such a run when this host can prove its process is gone: same host and boot
with the pid no longer there (or reused by a younger process), another boot of
this host, or a SLURM job that squeue no longer lists. A run on another host is
never touched on a pid's evidence.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

from pipeline import names, pids

# Tags the reaper reads (written by pipeline.tracking.provenance.process_tags).
HOST, BOOT, PID, STARTED, JOB = "host/name", "host/boot_id", "host/pid", "host/started", "launcher/job_id"
# Where a run's process leaves how it ended when the store would not take it (pipeline.tracking.recorder).
CAUSE_FILE = "run_end.json"


def _slurm_job_gone(job: str) -> bool:
    if shutil.which("squeue") is None:
        return False
    result = subprocess.run(["squeue", "-h", "-j", job.split(".")[0]], capture_output=True, text=True,
                            timeout=30)
    return (result.returncode == 0 and not result.stdout.strip()) or "Invalid job id" in result.stderr


def why_gone(tags: dict[str, str], host: str, boot: str) -> str | None:
    """How this host knows the run's process is gone, or None if it cannot tell (or it runs)."""
    import psutil

    job = tags.get(JOB, "none")
    if job != "none" and _slurm_job_gone(job):
        return f"its SLURM job {job} is no longer queued or running (squeue)"
    if tags.get(HOST) != host or PID not in tags:
        return None
    if tags.get(BOOT) != boot:
        return f"host {host} has rebooted since the run started"
    pid = int(tags[PID])
    if not pids.alive(pid):
        return f"its process {pid} on host {host} no longer exists"
    started = float(tags.get(STARTED, "inf"))
    try:
        if psutil.Process(pid).create_time() > started + 1:
            return f"its process {pid} on host {host} is gone (the pid now belongs to a newer process)"
    except psutil.NoSuchProcess:
        return f"its process {pid} on host {host} no longer exists"
    return None


def _cause(tags: dict[str, str]) -> tuple[str, str] | None:
    """(status, error) the run's process wrote to its run dir when the store refused them (a full
    disk), so the cause is not lost to "its process no longer exists"."""
    path = Path(tags.get(names.HYDRA_OUTPUT_DIR, "/nonexistent"), CAUSE_FILE)
    with contextlib.suppress(OSError, ValueError, KeyError):
        cause = json.loads(path.read_text())
        return str(cause["status"]), str(cause["error"])
    return None


def reap(client, experiment_ids: list[str], found_by: str) -> list[str]:
    """End every provably orphaned RUNNING run of these experiments KILLED (or as its process had
    meant to end it, with its error, where it left that in its run dir); the ids it ended."""
    from pipeline.tracking.provenance import boot_id

    host, boot = socket.gethostname(), boot_id()
    ended = []
    for run in client.search_runs(experiment_ids, "attributes.status = 'RUNNING'", max_results=1000):
        reason = why_gone(run.data.tags, host, boot)
        if reason is None:
            continue
        status, error = _cause(run.data.tags) or ("KILLED", "")
        client.set_tag(run.info.run_id, names.ERROR, f"{error + ' (' if error else ''}ended {status}: {reason}"
                                                     f"{')' if error else ''}")
        client.set_tag(run.info.run_id, names.REAPED, f"{found_by} at {time.strftime('%Y-%m-%d %H:%M:%S')}")
        client.set_terminated(run.info.run_id, status)
        ended.append(run.info.run_id)
    return ended
