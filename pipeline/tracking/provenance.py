"""What a run was made with and where it runs: code, libraries, host and process.

The code is identified twice: by the git commit of the pipeline's own checkout
(plus whether its tree was dirty), and by a hash of the pipeline's sources, which
works outside git too and is what resume compares. Host, boot, pid and launcher
job id let a later run prove that a run left RUNNING lost its process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

from pipeline.names import CODE_HASH, GIT_COMMIT, GIT_DIRTY

PROJECT = Path(__file__).resolve().parents[2]
# What a run's behaviour depends on: the package, the configs and the Hydra plugin.
_SOURCES = (("pipeline", "*.py"), ("conf", "*.yaml"), ("hydra_plugins", "*.py"))


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def code_tags() -> dict[str, str]:
    """The pipeline checkout's commit, whether its sources have uncommitted changes, their hash."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", *(folder for folder, _ in _SOURCES))
    return {GIT_COMMIT: commit or "unknown",
            GIT_DIRTY: "unknown" if commit is None or status is None else str(bool(status)).lower(),
            CODE_HASH: code_hash()}


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """sha256 of every source file that decides what a run computes (paths and contents)."""
    digest = hashlib.sha256()
    for folder, pattern in _SOURCES:
        for path in sorted((PROJECT / folder).rglob(pattern)):
            if "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def boot_id() -> str:
    """This boot of this host (a pid is only meaningful within one boot)."""
    path = Path("/proc/sys/kernel/random/boot_id")
    return path.read_text().strip() if path.is_file() else "unknown"


def job_id() -> str:
    """The batch system's job id (SLURM), or 'none'."""
    job = os.environ.get("SLURM_JOB_ID")
    step = os.environ.get("SLURM_STEP_ID")
    return f"{job}.{step}" if job and step else job or "none"


def process_tags() -> dict[str, str]:
    """Where this run's process is: host, boot, pid, start time, launcher job."""
    return {"host/name": socket.gethostname(), "host/boot_id": boot_id(), "host/pid": str(os.getpid()),
            "host/started": f"{time.time():.3f}", "launcher/job_id": job_id()}


def environment_tags() -> dict[str, str]:
    """Library versions and this host's cores and torch threads."""
    import sentence_transformers
    import torch
    import transformers

    return {"version/torch": torch.__version__,
            "version/transformers": transformers.__version__,
            "version/sentence_transformers": sentence_transformers.__version__,
            "host/cpu_count": str(os.cpu_count()),
            "host/torch_threads": str(torch.get_num_threads())}
