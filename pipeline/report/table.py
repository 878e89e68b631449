"""The report's table: one row per config (seeds pooled), Markdown and CSV, and the Pareto front."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

# (column, MLflow metric): per-config means (± spread with several seeds).
METRICS = [("s/step", "train/s_per_step"), ("train time (s)", "time/train_s"),
           ("eval fraction", "time/eval_fraction"), ("nDCG@10", "test/ndcg_at_10"),
           ("MRR@10", "test/mrr_at_10"), ("gain nDCG@10", "gain/ndcg_at_10")]
TEXTS_PER_STEP = "cost/texts_per_step"
# Params that don't make two runs different configs.
_NOT_CONFIG = ("seed", "resume", "preset")
_NOT_CONFIG_PREFIXES = ("paths.", "mlflow.")


def _config_key(params: dict[str, str]) -> tuple:
    return tuple(sorted((key, value) for key, value in params.items()
                        if key not in _NOT_CONFIG and not key.startswith(_NOT_CONFIG_PREFIXES)))


def _spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def summarize(runs: list) -> tuple[list[dict], bool]:
    """One row per config, sorted by k; and whether texts/step had to be computed."""
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault(_config_key(run.data.params), []).append(run)
    keys = [dict(key) for key in groups]
    names = sorted(set().union(*keys) - {"k", "loss.name"})
    varying = [name for name in names if len({key.get(name) for key in keys}) > 1]
    rows, computed = [], False
    for key, group in groups.items():
        params = dict(key)
        k, batch = int(params["k"]), int(params["train.batch_size"])
        texts = [r.data.metrics.get(TEXTS_PER_STEP) for r in group]
        if None in texts:
            texts, computed = [batch * (2 + k)], True
        row = {"k": k, "loss": params["loss.name"], "config": " ".join(f"{p}={params.get(p)}" for p in varying),
               "texts/step": round(statistics.fmean(texts)), "seeds": len(group),
               "runs": " ".join(r.info.run_id for r in group)}
        for column, metric in METRICS:
            row[column] = _spread([r.data.metrics.get(metric, float("nan")) for r in group])
        rows.append(row)
    rows.sort(key=lambda r: (r["config"], r["loss"], r["k"]))
    _mark_differences(rows)
    return rows, computed


def _mark_differences(rows: list[dict]) -> None:
    """Δ nDCG@10 against the reference row (smallest k), and whether it beats the seed spread."""
    ref = min(rows, key=lambda r: (r["config"], r["k"]))
    ref_mean, ref_std = ref["nDCG@10"]
    for row in rows:
        mean, std = row["nDCG@10"]
        row["Δ nDCG@10"] = mean - ref_mean
        if row is ref:
            row["beyond spread"] = "reference"
        elif std is None or ref_std is None:
            row["beyond spread"] = "n/a (1 seed)"
        else:
            row["beyond spread"] = "yes" if abs(mean - ref_mean) > std + ref_std else "no"
    for row in rows:
        row["reference"] = f"k={ref['k']}"


def pareto_front(rows: list[dict]) -> list[dict]:
    """Rows no other row beats on both training time (lower) and nDCG@10 (higher)."""
    front, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r["train time (s)"][0], -r["nDCG@10"][0])):
        if row["nDCG@10"][0] > best:
            front.append(row)
            best = row["nDCG@10"][0]
    return front


def _fmt(value, digits: int) -> str:
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


_DIGITS = {"s/step": 3, "train time (s)": 1, "eval fraction": 3, "nDCG@10": 4, "MRR@10": 4,
           "gain nDCG@10": 4, "Δ nDCG@10": 4}


def to_markdown(rows: list[dict], computed_texts: bool, title: str) -> str:
    columns = ["k", "loss"] + (["config"] if rows[0]["config"] else []) + ["texts/step"] + \
        [c for c, _ in METRICS] + ["Δ nDCG@10", "beyond spread", "seeds"]
    front = {id(r) for r in pareto_front(rows)}
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " | Pareto |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = [_fmt(row[c], _DIGITS.get(c, 0)) for c in columns]
        lines.append("| " + " | ".join(cells) + f" | {'★' if id(row) in front else ''} |")
    lines += ["", f"Mean ± standard deviation over seeds. Δ nDCG@10 is against {rows[0]['reference']}; "
              "'beyond spread' = |Δ| exceeds the two configs' standard deviations added up. "
              "★ = on the Pareto front of training time vs nDCG@10."]
    if computed_texts:
        lines.append("texts/step = train.batch_size × (2 + k), computed (the runs log no "
                     f"`{TEXTS_PER_STEP}`).")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], path: Path) -> None:
    spread = [c for c, _ in METRICS]
    header = ["k", "loss", "config", "texts/step"] + [h for c in spread for h in (c, f"{c} std")] + \
        ["Δ nDCG@10", "beyond spread", "reference", "seeds", "runs"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = [row["k"], row["loss"], row["config"], row["texts/step"]]
            values += [v for c in spread for v in (row[c][0], "" if row[c][1] is None else row[c][1])]
            writer.writerow(values + [row["Δ nDCG@10"], row["beyond spread"], row["reference"],
                                      row["seeds"], row["runs"]])


