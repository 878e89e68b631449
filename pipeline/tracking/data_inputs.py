"""The data a run saw, as MLflow dataset inputs: which rows (a digest), how many, and where
they came from, so the UI shows it and two runs on different data cannot be compared by mistake.

The digest comes from the pipeline (the stage-cache keys that made the rows): MLflow's own
would hash only the first 10,000 rows.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

from omegaconf import DictConfig


def data_name(data_cfg: DictConfig) -> str:
    """A short name for one source's data: 'docstrings', the file's name, the hub dataset's id,
    or translations-<language>."""
    if data_cfg.source == "files":
        return Path(data_cfg.path).name
    if data_cfg.source == "translations":
        return f"translations-{data_cfg.languages[0]}"
    return data_cfg.path if data_cfg.source == "hf" else "docstrings"


def _file(path: str):
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are the local file
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(Path(path).resolve().as_uri())


def source(data_cfg: DictConfig):
    """Where the rows came from: the local file, the hub dataset (reloadable by MLflow), or, for
    the harvested docstrings, which packages' sources."""
    if data_cfg.source == "hf":
        from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

        return HuggingFaceDatasetSource(path=data_cfg.path, config_name=data_cfg.name, split=data_cfg.split,
                                        revision=data_cfg.revision)
    if data_cfg.source == "files":
        return _file(data_cfg.path)
    from mlflow.data.code_dataset_source import CodeDatasetSource

    if data_cfg.source == "translations":
        return CodeDatasetSource({"data": f"English -> {data_cfg.languages[0]} pairs from the gettext catalogs of "
                                          f"{', '.join(data_cfg.catalogs)} (data=translations)"})
    packages = ", ".join(["the standard library", *data_cfg.packages])
    return CodeDatasetSource({"data": f"docstrings harvested from {packages} (data=docstrings)"})


def log_input(data_cfg: DictConfig, context: str, rows, digest: str, fixed_test: str | None = None,
              named: str | None = None) -> None:
    """Log `rows` (a datasets.Dataset) as the active run's `context` input ('train', 'dev', 'test')
    of the source whose data config is `data_cfg` (in a run of several, the source `named`); a test
    set fixed by eval.test (`fixed_test`) is named after, and sourced from, its file or folder."""
    import mlflow

    if context == "test" and fixed_test:
        name, origin = Path(fixed_test).name, _file(fixed_test)
    else:
        name, origin = named or data_name(data_cfg), source(data_cfg)
    dataset = mlflow.data.from_huggingface(rows, name=f"{name}/{context}", digest=digest, source=origin)
    for attempt in range(_ATTEMPTS):
        try:
            mlflow.log_input(dataset, context=context)
            return
        except mlflow.exceptions.MlflowException as exc:
            if attempt == _ATTEMPTS - 1 or not _same_dataset_logged_meanwhile(exc):
                raise
            time.sleep(0.1 * (attempt + 1))


# Parallel sweep jobs on the same data log the same dataset (experiment, name, digest) at once:
# MLflow looks it up, finds nothing, and both insert it; the second insert fails on the unique
# key and is rolled back. Tried again, the lookup finds the first job's row and links to it.
_ATTEMPTS = 3


def _same_dataset_logged_meanwhile(exc: BaseException) -> bool:
    """Whether a failed log_input was that unique-key clash (an IntegrityError behind MLflow's)."""
    from sqlalchemy.exc import IntegrityError

    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            break
        if isinstance(seen, IntegrityError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
