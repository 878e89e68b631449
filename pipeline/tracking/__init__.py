"""The only code that speaks to MLflow: the run recorder, sweeps' parent runs and resume
lookups, the report's queries, and what a run records of its code and host. MLflow itself is
imported lazily inside functions: config checks must not pay for it.
"""

import os


def quiet_mlflow() -> None:
    """MLflow's defaults for an offline pipeline, set by each entry point before MLflow loads
    (a user's own setting of these variables wins)."""
    # MLflow >= 3.x phones home (a DNS lookup at import); the pipeline runs offline by default.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow prints each run's URL with the tracking URI in it (credentials included): the
    # pipeline says where a run is itself, with credentials masked.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # Its artifact downloads draw a tqdm bar, which floods a log file with redraws.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
