"""Split stage: load (anchor, positive) pairs, de-duplicate, split train/dev/test.

Rows are split by group (by default the positive text), so no positive can
appear in two splits: a leaked positive would make test scores lie.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from omegaconf import DictConfig

from pipeline import docstrings
from pipeline.errors import PipelineError

VERSION = "1"
SPLITS = ("train", "dev", "test")
_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def data_fingerprint(cfg: DictConfig) -> str:
    """What the data depends on beyond its config: file contents, or the environment."""
    if cfg.source == "docstrings":
        return docstrings.fingerprint(list(cfg.packages))
    if cfg.source == "files":
        path = Path(cfg.path)
        if not path.is_file():
            raise PipelineError(f"data.path={cfg.path!r}: no such file.")
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return ""  # hub datasets: path, name, split and revision are all in the config


def _load_raw(cfg: DictConfig):
    import datasets

    if cfg.source == "docstrings":
        rows = docstrings.harvest(list(cfg.packages), cfg.min_summary_words,
                                  cfg.min_body_chars, cfg.max_body_chars)
        return datasets.Dataset.from_list(rows)
    if cfg.source == "files":
        fmt = _FORMATS.get(Path(cfg.path).suffix.lower())
        if fmt is None:
            raise PipelineError(f"data.path={cfg.path!r}: unknown format; allowed suffixes: "
                                f"{', '.join(_FORMATS)}.")
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
    """Rows {anchor, positive[, group]} from the configured source, checked."""
    ds = _load_raw(cfg)
    wanted = {"anchor": cfg.get("anchor_column", "anchor"),
              "positive": cfg.get("positive_column", "positive")}
    for role, column in wanted.items():
        if column not in ds.column_names:
            raise PipelineError(
                f"data.{role}_column={column!r}: no such column; the data has columns "
                f"{ds.column_names}. Set data.{role}_column to one of them."
            )
    if cfg.max_rows:
        ds = ds.select(range(min(cfg.max_rows, len(ds))))
    rows = []
    for row in ds:
        pair = {role: row[column] for role, column in wanted.items()}
        for role, value in pair.items():
            if not isinstance(value, str):
                raise PipelineError(
                    f"data.{role}_column={wanted[role]!r} holds {type(value).__name__} values "
                    f"(e.g. {value!r}); it must hold text."
                )
        rows.append(pair | {"_extra": row})
    return rows


def _group_of(row: dict, group_column: str | None) -> str:
    return str(row["_extra"][group_column]) if group_column else row["positive"]


def split_rows(rows: list[dict], cfg: DictConfig, seed: int) -> dict[str, list[dict]]:
    """De-duplicate, then assign whole groups to train/dev/test by the configured ratios."""
    if cfg.group_column and rows and cfg.group_column not in rows[0]["_extra"]:
        raise PipelineError(
            f"split.group_column={cfg.group_column!r}: no such column; the data has columns "
            f"{list(rows[0]['_extra'])}."
        )
    seen, unique = set(), []
    for row in rows:
        if (row["anchor"], row["positive"]) not in seen and row["anchor"].strip() and row["positive"].strip():
            seen.add((row["anchor"], row["positive"]))
            unique.append(row)
    if not unique:
        raise PipelineError("The data is empty after removing blank and duplicate pairs: "
                            "check data.path and the column mapping.")
    groups: dict[str, list[dict]] = {}
    for row in unique:
        groups.setdefault(_group_of(row, cfg.group_column), []).append(row)
    names = sorted(groups)
    random.Random(seed).shuffle(names)
    n = len(unique)
    targets = {"test": round(cfg.test * n), "dev": round(cfg.dev * n)}
    for part, cap in (("test", cfg.max_test), ("dev", cfg.max_dev)):
        if cap is not None:
            targets[part] = min(targets[part], cap)
    parts: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for name in names:
        rows_of_group = groups[name]
        part = next((p for p in ("test", "dev") if len(parts[p]) < targets[p]), "train")
        parts[part].extend(rows_of_group)
    for part in SPLITS:
        wanted = part == "train" or (cfg[part] > 0 and cfg.get(f"max_{part}") != 0)
        if not parts[part] and wanted:
            raise PipelineError(
                f"The {part} split is empty ({n} unique pairs, ratios train={cfg.train} "
                f"dev={cfg.dev} test={cfg.test}): use more data or larger ratios."
            )
    return parts


def _pairs_dataset(rows: list[dict]):
    import datasets

    return datasets.Dataset.from_dict(
        {"anchor": [r["anchor"] for r in rows], "positive": [r["positive"] for r in rows]},
        features=datasets.Features({"anchor": datasets.Value("string"),
                                    "positive": datasets.Value("string")}))


def run(data_cfg: DictConfig, split_cfg: DictConfig, seed: int, out_dir: Path) -> None:
    """Write train/dev/test as a DatasetDict, plus stats.json with sizes and leak count."""
    import datasets

    parts = split_rows(load_pairs(data_cfg), split_cfg, seed)
    # An empty split (dev with split.dev=0) is left out: datasets cannot reload one; load() restores it.
    dsd = datasets.DatasetDict({name: _pairs_dataset(rows) for name, rows in parts.items() if rows})
    dsd.save_to_disk(str(out_dir / "splits"))
    positives = {name: {r["positive"] for r in rows} for name, rows in parts.items()}
    leaked = len((positives["train"] & positives["dev"]) | (positives["train"] & positives["test"])
                 | (positives["dev"] & positives["test"]))
    stats = {f"split/{name}_rows": len(rows) for name, rows in parts.items()}
    stats["split/leaked_positives"] = leaked
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=1))


def load(entry_dir: Path):
    """The DatasetDict a split entry holds, with an empty split for each one left out."""
    import datasets

    dsd = datasets.load_from_disk(str(entry_dir / "splits"))
    for name in SPLITS:
        if name not in dsd:
            dsd[name] = _pairs_dataset([])
    return dsd
