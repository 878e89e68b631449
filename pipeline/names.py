"""Tag names that more than one module writes or reads: spelled once, here.

Metric names stay where they are measured (a stage's stats, the runner's timings);
these are the names that tie runs together: sweeps, resume, provenance.
"""

from __future__ import annotations

SWEEP_ID = "sweep/id"
SWEEP_PARENT = "sweep/parent"  # "true" on a sweep's parent run
SWEEP_DIR = "sweep/dir"
SWEEP_JOB = "sweep/job_num"
SWEEP_LAUNCHER = "sweep/launcher"
SWEEP_OVERRIDES = "sweep/overrides"
SWEEP_KEYS = "sweep/swept_keys"  # on a child: the keys its sweep varies (space-separated)
REUSED = "reused/"  # + job number, on a parent run: the FINISHED run a resumed job reused
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own: makes a run a nested child in the UI
NOTE = "mlflow.note.content"  # MLflow's own: the run's description in the UI
CONFIG_HASH = "config_hash"
ERROR = "error"
REAPED = "reaped_by"  # on a run found orphaned and ended KILLED: which run or report found it, when
CODE_HASH = "code_hash"
PRESET = "preset"
GIT_COMMIT = "git_commit"
GIT_DIRTY = "git_dirty"
MODEL_DIR = "model_dir"
MODEL_URI = "model/uri"  # where the run's logged model is (runs:/<run id>/model)
MODEL_LOAD = "model/load"  # the one line of Python that loads it
CHUNK_BUDGET_CHOSEN = "chunk_budget/chosen"  # what loss.chunk_budget=auto kept: a budget or "one forward"
CHUNK_BUDGET_HOW = "chunk_budget/how"  # measured (with the seconds) or the device kind's guess, and why
HYDRA_OVERRIDES = "hydra/overrides"
HYDRA_OUTPUT_DIR = "hydra/output_dir"
# A run's per-query test scores (the tuned model's), which the report's intervals are computed from.
PER_QUERY_ARTIFACT = "test/per_query.json"
# The final quality figure a Hydra job returns by default (the `objectives` key: what a sweeper optimises).
OBJECTIVE = "test/ndcg_at_10"


def cache_tags(stage: str, key: str, hit: bool) -> dict[str, str]:
    """Which stage-cache entry a run used, and whether it was already there."""
    return {f"cache/{stage}_key": key, f"cache/{stage}_hit": str(hit).lower()}


WARNING_PREFIX = "warning/"


def warning(name: str) -> str:
    return f"{WARNING_PREFIX}{name}"
