"""The report's answer as the sweep's parent run carries it in the MLflow UI: each row's figures
as metrics (answer/<row>/...), the recommendation as tags, the Markdown table as the run's
description. Everything comes from the report's own rows: nothing is computed again here."""

from __future__ import annotations

import hashlib
import math
import re

from pipeline.names import NOTE
from pipeline.report.significance import Comparison

_NOTE_MAX = 8000  # MLflow's limit on a tag's value
_SLUG_MAX = 120  # leaves room under MLflow's 250 characters of a metric name
_CUT = "\n\n… (cut here: the whole report is the artifact report/report.md)\n"


def slug(row: dict, digits: int | None = 3) -> str:
    """A row as a metric-name segment: `k8_mnrl`, with what sets it apart from the other rows
    (e.g. `k8_mnrl_negatives-bank_learning_rate-0.0282`: a float to `digits` significant digits,
    as the runs' names show it); only characters MLflow allows in a metric name."""
    config = [f"{key.rpartition('.')[2]}-{_short(value, digits)}" for key, _, value in
              (part.partition("=") for part in re.split(r" (?=[\w.]+=)", row["config"]) if part)]
    name = "_".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", part).strip("_") for part in
                    [f"k{row['k']}", row["loss"], *config])
    if len(name) <= _SLUG_MAX:
        return name
    return f"{name[:_SLUG_MAX - 9]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _short(value: str, digits: int | None) -> str:
    if digits is None or not re.fullmatch(r"-?\d*\.\d+(e-?\d+)?|-?\d+e-?\d+", value):
        return value
    return f"{float(value):.{digits}g}"


def slugs(rows: list[dict]) -> dict[int, str]:
    """Each row's slug by id(row): floats shortened, unless that makes two rows' slugs the same."""
    short = [slug(row) for row in rows]
    if len(set(short)) < len(short):
        short = [slug(row, None) for row in rows]
    return {id(row): name for row, name in zip(rows, short, strict=True)}


def _figures(row: dict) -> dict[str, float | None]:
    """The row's figures by metric name: means over seeds, 95 % interval ends, Δ vs the reference."""
    figures: dict[str, float | None] = {"k": row["k"], "seeds": row["seeds"],
                                        "ndcg_at_10_mean": row["nDCG@10"][0], "mrr_at_10_mean": row["MRR@10"][0],
                                        "train_s_mean": row["train time (s)"][0],
                                        "delta_ndcg_at_10": row["Δ nDCG@10"]}
    for column, name in (("nDCG@10", "ndcg_at_10"), ("MRR@10", "mrr_at_10")):
        interval = row[f"{column} CI"]
        figures |= {f"{name}_ci_low": interval and interval.low, f"{name}_ci_high": interval and interval.high}
    return figures


def metrics(rows: list[dict]) -> dict[str, float]:
    """answer/<row slug>/<figure> for every row; figures a row lacks (no interval, nan) left out."""
    names = slugs(rows)
    return {f"answer/{names[id(row)]}/{name}": float(value) for row in rows for name, value in _figures(row).items()
            if value is not None and not math.isnan(value)}


def tags(recommendation: str, comparison: Comparison, markdown: str, rows: list[dict]) -> dict[str, str]:
    """The recommendation (the sentence, and its row's slug) and the table as the run's description."""
    chosen = comparison.recommended
    note = markdown if len(markdown) <= _NOTE_MAX else markdown[:_NOTE_MAX - len(_CUT)] + _CUT
    row = slugs(rows)[id(chosen)] if chosen else "n/a"
    return {"answer/recommended": recommendation, "answer/recommended_row": row, NOTE: note}
