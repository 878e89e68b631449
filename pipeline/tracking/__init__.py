"""The only code that speaks to MLflow: the run recorder, sweeps' parent runs and resume
lookups, the report's queries, and the tag names runs share. MLflow itself is imported
lazily inside functions: config checks must not pay for it.
"""

import os

# MLflow >= 3.x phones home (a DNS lookup at import); the pipeline runs offline by default.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# MLflow prints each run's URL with the tracking URI in it (credentials included): the
# pipeline says where a run is itself, with credentials masked.
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
# Its artifact downloads draw a tqdm bar, which floods a log file with redraws.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
