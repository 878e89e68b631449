"""Split stage: load (anchor, positive) pairs, de-duplicate, split train/dev/test.

Rows are split by group (by default the positive text), so no positive can
appear in two splits: a leaked positive would make test scores lie.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from omegaconf import DictConfig

from pipeline.errors import PipelineError
from pipeline.stages.sources import load_pairs

VERSION = "1"
SPLITS = ("train", "dev", "test")


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
