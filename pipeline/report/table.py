"""The report's table: one row per config (seeds pooled), Markdown and CSV, and the Pareto front.

Intervals, paired tests and the recommendation come from pipeline.report.significance.
"""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

from pipeline.config.inert import inert
from pipeline.report.budgets import BUDGET, NEGATIVES, SPENT, UNIT, AtBudget, at_equal_cost, setup
from pipeline.report.budgets import lines as budget_lines
from pipeline.report.significance import COMPARED, Comparison, by_source, compare, label
from pipeline.report.significance import METRICS as COMPARED_METRICS
from pipeline.report.stats import RESAMPLES

# (column, MLflow metric): per-config means (± spread with several seeds).
METRICS = [("s/step", "train/s_per_step"), ("steps", "train/steps"), ("train time (s)", "time/train_s"),
           ("eval fraction", "time/eval_fraction"), ("nDCG@10", "test/ndcg_at_10"),
           ("MRR@10", "test/mrr_at_10"), ("gain nDCG@10", "gain/ndcg_at_10")]
TEXTS_PER_STEP = "cost/texts_per_step"
# Params that don't make two runs different configs.
_NOT_CONFIG = ("seed", "resume", "preset", "report", "objectives")
_NOT_CONFIG_PREFIXES = ("paths.", "mlflow.")


def _config_key(params: dict[str, str]) -> tuple:
    """What makes two runs one config: their params, but seeds, outputs and keys that change nothing
    in them (pipeline.config.inert)."""
    ignored = inert(params)
    return tuple(sorted((key, value) for key, value in params.items() if key not in _NOT_CONFIG
                        and key not in ignored and not key.startswith(_NOT_CONFIG_PREFIXES)))


def _spread(values: list[float]) -> tuple[float, float | None]:
    """Mean and standard deviation over seeds; runs without the metric (nan) are left out, as
    statistics.stdev fails on nan."""
    known = [value for value in values if not math.isnan(value)]
    if not known:
        return float("nan"), None
    return statistics.fmean(known), (statistics.stdev(known) if len(known) > 1 else None)


def summarize(runs: list, per_run: dict[str, dict | None]) -> tuple[list[dict], Comparison, bool]:
    """One row per config, sorted by k, compared (significance.compare) on the runs' per-query
    scores `per_run` (run id -> per_query.json content or None); and whether texts/step had to
    be computed."""
    groups: dict[tuple, list] = {}
    for run in runs:
        groups.setdefault(_config_key(run.data.params), []).append(run)
    keys = [dict(key) for key in groups]
    names = sorted(set().union(*keys) - {"k", "loss.name"})
    # A key left out of a row as inert there (a k=0 row's miner keys) does not make it differ.
    varying = [name for name in names if len({key[name] for key in keys if name in key}) > 1]
    rows, computed = [], False
    for key, group in groups.items():
        params = dict(key)
        k, batch = int(params["k"]), int(params["train.batch_size"])
        texts = [r.data.metrics.get(TEXTS_PER_STEP) for r in group]
        if None in texts:
            texts, computed = [batch * (2 + k)], True
        row = {"k": k, "loss": params["loss.name"],
               "config": " ".join(f"{p}={params[p]}" for p in varying if p in params),
               "texts/step": round(statistics.fmean(texts)), "seeds": len(group),
               "runs": " ".join(r.info.run_id for r in group)} | _budget(params, group)
        for column, metric in METRICS:
            row[column] = _spread([r.data.metrics.get(metric, float("nan")) for r in group])
        rows.append(row)
    rows.sort(key=lambda r: (r["config"], r["loss"], r["k"]))
    return rows, compare(rows, per_run), computed


def _negatives(params: dict[str, str]) -> str:
    """Where a row's hard negatives come from: none (k=0), live, frozen, bank, or bank online."""
    if params["k"] == "0":
        return "none"
    mode = params.get("loss.negatives", "live")
    return f"{mode} online" if mode == "bank" and params.get("loss.bank_mining") == "online" else mode


def _budget(params: dict[str, str], group: list) -> dict:
    """The row's budget (None without one), its unit, its negatives and the compute it spent."""
    amount = params.get("train.budget", "None")
    spent = [r.data.metrics.get("budget/spent", float("nan")) for r in group]
    return {BUDGET: None if amount == "None" else float(amount), UNIT: params.get("train.budget_unit", ""),
            NEGATIVES: _negatives(params), SPENT: _spread(spent)}


def pareto_front(rows: list[dict], cost: str = "train time (s)") -> list[dict]:
    """Rows no other row beats on both `cost` (lower: training time, or the compute spent) and
    nDCG@10 (higher)."""
    front, best = [], float("-inf")
    for row in sorted(rows, key=lambda r: (r[cost][0], -r["nDCG@10"][0])):
        if row["nDCG@10"][0] > best:
            front.append(row)
            best = row["nDCG@10"][0]
    return front


def _fmt(value, digits: int) -> str:
    if isinstance(value, tuple):
        mean, std = value
        return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")
    return f"{value:+.{digits}f}" if isinstance(value, float) else str(value)


def _interval(interval, signed: bool = False) -> str:
    """[low, high] of an Interval or Difference, or n/a."""
    if interval is None:
        return "n/a"
    sign = "+" if signed else ""
    return f"[{interval.low:{sign}.4f}, {interval.high:{sign}.4f}]"


_DIGITS = {"s/step": 3, "train time (s)": 1, "eval fraction": 3, "nDCG@10": 4, "MRR@10": 4,
           "gain nDCG@10": 4, "Δ nDCG@10": 4}
_CI = " 95 % CI"


def _cells(row: dict) -> dict[str, str]:
    """The Markdown cells of a row, by column."""
    cells = {column: _fmt(row[column], _DIGITS.get(column, 0)) for column in
             ["k", "loss", "config", "texts/step", "Δ nDCG@10", "significant at 95 %", "vs best", "seeds",
              *(c for c, _ in METRICS)]}
    cells |= {column + _CI: _interval(row[f"{column} CI"]) for column in COMPARED_METRICS}
    reference = row["significant at 95 %"] == "reference"
    cells["Δ" + _CI] = "" if reference else _interval(row["Δ CI"], signed=True)
    return cells


def to_markdown(rows: list[dict], comparison: Comparison, recommendation: str, computed_texts: bool,
                title: str) -> str:
    columns = ["k", "loss"] + (["config"] if rows[0]["config"] else []) + ["texts/step", "s/step",
               "train time (s)", "eval fraction", "nDCG@10", "nDCG@10" + _CI, "MRR@10", "MRR@10" + _CI,
               "gain nDCG@10", "Δ nDCG@10", "Δ" + _CI, "significant at 95 %", "vs best", "seeds"]
    front = {id(r) for r in pareto_front(rows)}
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " | Pareto |",
             "|" + "---|" * (len(columns) + 1)]
    for row in rows:
        cells = _cells(row)
        lines.append("| " + " | ".join(cells[c] for c in columns) + f" | {'★' if id(row) in front else ''} |")
    best = label(comparison.best) if comparison.best else "none (no per-query scores)"
    lines += ["", f"**{recommendation}**", "",
              f"Mean (± standard deviation over seeds). 95 % CI: percentile bootstrap over the test "
              f"queries, seeds of a row resampled too ({RESAMPLES:,} resamples, seeded). Δ nDCG@10 is against "
              f"the reference row, {label(comparison.reference)}; 'significant at 95 %' = the paired "
              f"bootstrap's 95 % interval of that Δ excludes 0 (p: two-sided); 'vs best' = the same "
              f"paired test against the best row, {best}. "
              "★ = on the Pareto front of training time vs nDCG@10."]
    if computed_texts:
        lines.append("texts/step = train.batch_size × (2 + k), computed (the runs log no "
                     f"`{TEXTS_PER_STEP}`).")
    lines += _source_lines(rows, comparison)
    answers = at_equal_cost(rows)
    if answers:
        lines += ["", *_equal_cost_lines(answers, rows)]
    return "\n".join(lines) + "\n"


def _source_lines(rows: list[dict], comparison: Comparison) -> list[str]:
    """Runs on several data sources: each row's nDCG@10 per source with its interval, and its
    difference from the reference row on that source's queries ([] for runs on one source)."""
    tables = [(row, by_source(row, comparison.reference)) for row in rows]
    tables = [(row, table) for row, table in tables if table]
    if not tables:
        return []
    sources = list(tables[0][1])
    lines = ["", "### Per source", "", "| row | " + " | ".join(f"{s} nDCG@10 | {s} Δ vs reference" for s in sources)
             + " |", "|---|" + "---|---|" * len(sources)]
    for row, table in tables:
        cells = []
        for source in sources:
            interval, difference = table.get(source, (None, None))
            cells.append(f"{interval.mean:.4f} {_interval(interval)}" if interval else "n/a")
            cells.append("reference" if row is comparison.reference else "n/a" if difference is None else
                         f"{difference.mean:+.4f} {_interval(difference, signed=True)}"
                         f"{' (worse)' if difference.high < 0 else ''}")
        lines.append(f"| {label(row)} | " + " | ".join(cells) + " |")
    return lines + ["", "The row's nDCG@10 above is the macro average of its sources (each counts the same); "
                    "per source: a bootstrap over that source's queries, and the paired difference from the "
                    "reference row on them ('worse': its 95 % interval is below 0)."]


def _equal_cost_lines(answers: list[AtBudget], rows: list[dict]) -> list[str]:
    """Rows grouped by budget, each held to its budget's best row; the answer per budget; the front."""
    lines = ["### At equal cost", "",
             "| budget | k | loss | negatives | nDCG@10 | nDCG@10" + _CI + " | Δ vs the budget's best | Δ" + _CI +
             " | vs the budget's best | spent | steps | seeds |", "|" + "---|" * 12]
    for answer in answers:
        for row in sorted(answer.rows, key=lambda r: -r["nDCG@10"][0]):
            difference = answer.vs_best.get(id(row))
            verdict = "best" if row is answer.best else ("n/a" if difference is None else (
                f"{'below' if difference.significant else 'not below'} (p={difference.p_value:.3f})"))
            delta = "" if row is answer.best or difference is None else f"{difference.mean:+.4f}"
            lines.append(f"| {answer.budget:,.6g} {answer.unit} | {row['k']} | {row['loss']} | {row[NEGATIVES]} "
                         f"| {_fmt(row['nDCG@10'], 4)} | {_interval(row['nDCG@10' + ' CI'])} | {delta} "
                         f"| {'' if row is answer.best else _interval(difference, signed=True)} | {verdict} "
                         f"| {_fmt(row[SPENT], 0)} | {_fmt(row['steps'], 0)} | {row['seeds']} |")
    front = ", ".join(f"{setup(row)} at {row[SPENT][0]:,.0f} {row[UNIT]}" for row in pareto_front(rows, SPENT)
                      if row[BUDGET] is not None)
    return lines + ["", *(f"**{line}**" for line in budget_lines(answers)), "",
                    f"Each budget's rows spent the same compute (spent: measured, in the budget's unit), so "
                    f"they compare at equal cost; Δ and 'vs the budget's best' are the paired bootstrap against "
                    f"that budget's best row. Pareto front of compute spent vs nDCG@10: {front}."]


def to_csv(rows: list[dict], comparison: Comparison, path: Path) -> None:
    spread = [c for c, _ in METRICS]
    header = ["k", "loss", "config", "texts/step"] + [h for c in spread for h in (c, f"{c} std")] + \
        [f"{c} CI {end}" for c in COMPARED_METRICS for end in ("low", "high")] + \
        ["Δ nDCG@10", "Δ CI low", "Δ CI high", "Δ p", "significant at 95 %", "vs best", "vs best p",
         "reference", "best", "recommended", "seeds", "test queries", "runs"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            values = [row["k"], row["loss"], row["config"], row["texts/step"]]
            values += [v for c in spread for v in (row[c][0], "" if row[c][1] is None else row[c][1])]
            values += [v for c in COMPARED_METRICS for v in _ends(row[f"{c} CI"])]
            values += [row["Δ nDCG@10"], *_ends(row["Δ CI"]), _p(row["Δ CI"]), row["significant at 95 %"],
                       row["vs best"], _p(row["vs best Δ"]), label(comparison.reference),
                       label(comparison.best) if comparison.best else "",
                       "yes" if row is comparison.recommended else "", row["seeds"],
                       row["scores"].matrices[COMPARED].shape[1] if row["nDCG@10 CI"] else "", row["runs"]]
            writer.writerow(values)


def pairs_to_csv(comparison: Comparison, path: Path) -> None:
    """Every paired bootstrap between two rows scored on the same test set: a - b."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "b", "metric", "mean a - b", "CI low", "CI high", "p", "significant at 95 %"])
        for a, b, column, d in comparison.pairs:
            if d is None:
                continue
            writer.writerow([label(a), label(b), column, d.mean, d.low, d.high, d.p_value,
                             "yes" if d.significant else "no"])


def _ends(interval) -> tuple:
    return ("", "") if interval is None else (interval.low, interval.high)


def _p(difference) -> float | str:
    return "" if difference is None else difference.p_value
