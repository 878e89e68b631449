"""Where (anchor, positive) pairs come from: docstrings, a local file, or a hub dataset.

`check` reads only a file's first row, so preflight can refuse a bad file or column
mapping in seconds; `load_pairs` reads everything for the split stage. Both say
the same thing about the same problem.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.stages import docstrings

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _no_file(cfg: DictConfig) -> PipelineError:
    return PipelineError(f"data.path={cfg.path!r}: no such file.")


def _no_column(role: str, column: str, columns: list[str]) -> PipelineError:
    return PipelineError(f"data.{role}_column={column!r}: no such column; the data has "
                         f"columns {columns}. Set data.{role}_column to one of them.")


def _not_text(role: str, column: str, value: object) -> PipelineError:
    return PipelineError(f"data.{role}_column={column!r} holds {type(value).__name__} "
                         f"values (e.g. {value!r}); it must hold text.")


def _first_row(path: Path) -> dict[str, object]:
    """Column name -> a sample value (or arrow type for parquet), read cheaply."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return {f.name: f.type for f in pq.read_schema(path)}
    with path.open(encoding="utf-8", newline="") as handle:
        if suffix == ".csv":
            header = next(csv.reader(handle), None)
            return dict.fromkeys(header or [], "")
        for line in handle:
            if line.strip():
                row = json.loads(line)
                return row if isinstance(row, dict) else {}
    return {}


def check(cfg: DictConfig) -> None:
    """A data=files source exists, is not empty and has the mapped text columns."""
    path = Path(cfg.path)
    if not path.is_file():
        raise _no_file(cfg)
    try:
        columns = _first_row(path)
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise PipelineError(f"data.path={cfg.path!r} could not be read: {exc}") from exc
    if not columns:
        raise PipelineError(f"data.path={cfg.path!r} holds no rows: the data is empty.")
    for role in ("anchor", "positive"):
        column = cfg[f"{role}_column"]
        if column not in columns:
            raise _no_column(role, column, list(columns))
        sample = columns[column]
        if not (isinstance(sample, str) or str(sample) in ("string", "large_string")):
            raise _not_text(role, column, sample)


def fingerprint(cfg: DictConfig) -> str:
    """What the data depends on beyond its config: file contents, or the environment."""
    if cfg.source == "docstrings":
        return docstrings.fingerprint(list(cfg.packages))
    if cfg.source == "files":
        path = Path(cfg.path)
        if not path.is_file():
            raise _no_file(cfg)
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return ""  # hub datasets: path, name, split and revision are all in the config


def _load_raw(cfg: DictConfig):
    import datasets

    if cfg.source == "docstrings":
        rows = docstrings.harvest(list(cfg.packages), cfg.min_summary_words,
                                  cfg.min_body_chars, cfg.max_body_chars)
        return datasets.Dataset.from_list(rows)
    if cfg.source == "files":
        fmt = FORMATS.get(Path(cfg.path).suffix.lower())
        if fmt is None:
            raise PipelineError(f"data.path={cfg.path!r}: unknown format; allowed suffixes: "
                                f"{', '.join(FORMATS)}.")
        try:
            return datasets.load_dataset(fmt, data_files=str(cfg.path), split="train")
        except Exception as exc:  # empty or malformed files fail deep inside datasets
            raise PipelineError(f"data.path={cfg.path!r}: could not be read as {fmt}: {exc}") from exc
    try:
        return datasets.load_dataset(cfg.path, cfg.name, split=cfg.split, revision=cfg.revision)
    except Exception as exc:
        raise PipelineError(
            f"data.path={cfg.path!r} (name={cfg.name}, split={cfg.split}) could not be loaded "
            f"from the Hugging Face hub: {exc}. Offline, use data=docstrings or data=files."
        ) from exc


def load_pairs(cfg: DictConfig) -> list[dict]:
    """Rows {anchor, positive, _extra: the whole source row} from the configured source, checked."""
    ds = _load_raw(cfg)
    wanted = {"anchor": cfg.get("anchor_column", "anchor"),
              "positive": cfg.get("positive_column", "positive")}
    for role, column in wanted.items():
        if column not in ds.column_names:
            raise _no_column(role, column, ds.column_names)
    if cfg.max_rows:
        ds = ds.select(range(min(cfg.max_rows, len(ds))))
    rows = []
    for row in ds:
        pair = {role: row[column] for role, column in wanted.items()}
        for role, value in pair.items():
            if not isinstance(value, str):
                raise _not_text(role, wanted[role], value)
        rows.append(pair | {"_extra": row})
    return rows
