"""Launcher checks and per-job CPU shares, so parallel jobs don't fight over cores.

The launchers themselves are Hydra plugins (basic, joblib, submitit); this
module only reads their config: before the sweep starts (clamp n_jobs, refuse
SLURM where there is none) and inside each job (limit its threads).
"""

from __future__ import annotations

import logging
import os
import shutil

from omegaconf import DictConfig, open_dict

from pipeline.errors import PipelineError, refused

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """Cores this process may use (its affinity mask, not the whole machine)."""
    return len(os.sched_getaffinity(0))


_KINDS = {"JoblibLauncher": "joblib", "SlurmLauncher": "submitit_slurm", "LocalLauncher": "submitit_local"}


def _kind(launcher: DictConfig) -> str:
    """The launcher's name as in `hydra/launcher=NAME`, from its plugin class."""
    return _KINDS.get(str(launcher.get("_target_", "")).rsplit(".", 1)[-1], "basic")


def parallel_jobs(n_jobs: int, cores: int) -> int:
    """How many jobs joblib runs at once for `n_jobs` (-1 = all cores, -2 = all but one)."""
    wanted = n_jobs if n_jobs > 0 else cores + 1 + n_jobs
    return max(1, min(wanted, cores))


def check_launcher(launcher: DictConfig) -> None:
    """Before any job starts: clamp joblib's n_jobs to the cores; refuse SLURM without sbatch."""
    kind = _kind(launcher)
    if kind == "joblib" and (not isinstance(launcher.n_jobs, int) or launcher.n_jobs == 0):
        raise refused("hydra.launcher.n_jobs", launcher.n_jobs,
                      "a number of jobs run at once: 1 or more, or -1 for one per core (-2: all but one)")
    if kind == "joblib" and launcher.n_jobs > cpu_count():
        log.warning("hydra.launcher.n_jobs=%d is more than the %d cores here: clamped to %d",
                    launcher.n_jobs, cpu_count(), cpu_count())
        with open_dict(launcher):
            launcher.n_jobs = cpu_count()
    if kind == "submitit_slurm" and shutil.which("sbatch") is None:
        raise PipelineError("hydra/launcher=submitit_slurm needs SLURM, but there is no `sbatch` on "
                            "this machine. Run the same sweep locally with hydra/launcher=joblib "
                            "(parallel) or hydra/launcher=submitit_local, or submit from a SLURM login node.")


def job_threads(launcher: DictConfig) -> int | None:
    """This job's share of CPU threads, or None to keep torch's default (one job at a time)."""
    kind = _kind(launcher)
    if kind == "joblib":
        return max(1, cpu_count() // parallel_jobs(launcher.n_jobs, cpu_count()))
    if kind.startswith("submitit") and launcher.get("cpus_per_task"):
        return int(launcher.cpus_per_task)
    return None


def limit_threads(threads: int) -> None:
    """Cap torch and the BLAS/OpenMP pools of this process at `threads`."""
    import torch

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    torch.set_num_threads(threads)
