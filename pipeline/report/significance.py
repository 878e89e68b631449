"""Which differences between the report's rows are real, and which row to recommend.

Each row's runs (its seeds) are pooled by the stats module's two-level bootstrap over their
per-query test scores, so a row's 95 % interval of nDCG@10 or MRR@10 holds both test-query and
seed noise. Rows scored on the same test set (equal fingerprints in their per_query.json) are
compared by a paired bootstrap: a difference is significant at 95 % when its interval excludes
0. Every row is compared with the reference row (smallest k: the Δ column) and with the best
row (highest mean nDCG@10 among the rows on the test set most rows share); the recommendation
is the cheapest row by training time whose nDCG@10 is not significantly below the best's. Rows
whose runs saved no per-query scores (runs from before they were saved), or whose seeds were
scored on different test sets, get "n/a".
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from pipeline.report.stats import Difference, Interval, bootstrap_mean, paired_bootstrap, stack

# Report column -> per-query metric name; rows are compared and recommended on the first.
METRICS = {"nDCG@10": "ndcg_at_10", "MRR@10": "mrr_at_10"}
COMPARED = "nDCG@10"


@dataclass(frozen=True)
class RowScores:
    """A row's per-query scores: one (seeds x queries) matrix per metric, on one test set; for a
    run of several data sources, each query's source (`strata`, an index into `sources`), and
    the row's figure is their macro average."""

    test_set: str
    matrices: dict[str, np.ndarray]
    sources: tuple[str, ...] = ()
    strata: np.ndarray | None = None


@dataclass
class Comparison:
    """The rows compared: reference, best and recommended row, and every paired test (a - b)."""

    reference: dict
    best: dict | None
    recommended: dict | None
    pairs: list[tuple[dict, dict, str, Difference | None]]


def label(row: dict) -> str:
    return " ".join(part for part in (f"k={row['k']}", row["loss"], row["config"]) if part)


def row_scores(given: list[dict | None]) -> RowScores | str:
    """The row's matrices from its runs' per_query.json contents, or why there are none."""
    per_run = [scores for scores in given if scores is not None]
    if len(per_run) < len(given):
        return "n/a (no per-query scores)"
    if len({scores["test_set"] for scores in per_run}) > 1:
        return "n/a (seeds scored different test sets)"
    query_ids = list(per_run[0]["queries"])
    sources = tuple(per_run[0].get("sources", ()))
    strata = np.array([sources.index(qid.split("/", 1)[0]) for qid in query_ids]) if sources else None
    return RowScores(per_run[0]["test_set"], {
        column: stack([{qid: values[metric] for qid, values in scores["queries"].items()}
                       for scores in per_run], query_ids)
        for column, metric in METRICS.items()}, sources, strata)


def compare(rows: list[dict], per_run: dict[str, dict | None]) -> Comparison:
    """Add to each row its `scores`, `<metric> CI` (Interval or None), `Δ nDCG@10` and `Δ CI`
    against the reference, `significant at 95 %`, and `vs best` (text) with `vs best Δ`."""
    for row in rows:
        row["scores"] = row_scores([per_run[run_id] for run_id in row["runs"].split()])
        for column in METRICS:
            row[f"{column} CI"] = bootstrap_mean(row["scores"].matrices[column], strata=row["scores"].strata) \
                if _scored(row) else None
    reference = min(rows, key=lambda r: (r["config"], r["k"]))
    best = max(_on_main_test_set(rows), key=lambda r: r[COMPARED][0], default=None)
    for row in rows:
        row["Δ nDCG@10"] = row[COMPARED][0] - reference[COMPARED][0]
        row["Δ CI"], row["vs best Δ"] = paired(row, reference), paired(row, best)
        row["significant at 95 %"] = _verdict(row, reference, "reference", row["Δ CI"], ("yes", "no"))
        row["vs best"] = _verdict(row, best, "best", row["vs best Δ"], ("below", "not below"))
    candidates = [row for row in rows
                  if row is best or (row["vs best Δ"] is not None and not row["vs best Δ"].significant)]
    recommended = min(candidates, key=lambda r: r["train time (s)"][0], default=None)
    pairs = [(a, b, column, paired(a, b, column)) for a, b in combinations(filter(_scored, rows), 2)
             if a["scores"].test_set == b["scores"].test_set for column in METRICS]
    return Comparison(reference, best, recommended, pairs)


def by_source(row: dict, reference: dict) -> dict[str, tuple[Interval, Difference | None]]:
    """For a row of runs on several sources: each source's nDCG@10 interval over its own queries, and
    the row minus the reference row on them (None for the reference itself, or unpaired)."""
    scores = row["scores"]
    if not _scored(row) or not scores.sources:
        return {}
    paired_with = reference if reference is not row and _scored(reference) and \
        reference["scores"].test_set == scores.test_set else None
    out = {}
    for index, source in enumerate(scores.sources):
        columns = scores.strata == index
        mine = scores.matrices[COMPARED][:, columns]
        theirs = paired_with["scores"].matrices[COMPARED][:, columns] if paired_with is not None else None
        out[source] = (bootstrap_mean(mine), paired_bootstrap(mine, theirs) if theirs is not None else None)
    return out


def worse_sources(row: dict, reference: dict) -> list[str]:
    """The sources on which `row` is significantly below the reference row."""
    return [source for source, (_, d) in by_source(row, reference).items() if d is not None and d.high < 0]


def recommendation(comparison: Comparison, rows: list[dict]) -> str:
    """The recommendation line: the recommended row, its k and why."""
    chosen, best = comparison.recommended, comparison.best
    if chosen is None or best is None:
        return ("Recommendation: n/a: no run here saved per-query test scores (runs from before "
                "they were saved); run the sweep again with resume=false.")
    why = "it is the best row itself" if chosen is best else (
        f"nDCG@10 {chosen[COMPARED][0]:.4f} against the best row's {best[COMPARED][0]:.4f} "
        f"({label(best)}; paired bootstrap, {_difference_text(chosen['vs best Δ'])})")
    left_out = [f"{label(row)}, {row['vs best']}" for row in rows if row is not best and row["vs best Δ"] is None]
    note = f" Not considered: {'; '.join(left_out)}." if left_out else ""
    sources = ""
    if _scored(chosen) and chosen["scores"].sources:
        worse = worse_sources(chosen, comparison.reference)
        sources = (f" Its nDCG@10 is the macro average of {len(chosen['scores'].sources)} sources; against the "
                   f"reference row ({label(comparison.reference)}) it is "
                   + (f"significantly worse on {', '.join(worse)}." if worse else "significantly worse on none."))
    return (f"Recommendation: {label(chosen)}: the cheapest row by training time "
            f"({chosen['train time (s)'][0]:.1f} s) whose nDCG@10 is not significantly below the best "
            f"row's at 95 %; {why}.{note}{sources}")


def _difference_text(difference: Difference) -> str:
    return f"Δ {difference.mean:+.4f} [{difference.low:+.4f}, {difference.high:+.4f}], p={difference.p_value:.3f}"


def _on_main_test_set(rows: list[dict]) -> list[dict]:
    """The scored rows on the test set most rows were scored on: means on other test sets do
    not compare, so the best row is picked among these."""
    sets = [row["scores"].test_set for row in rows if _scored(row)]
    main = max(sets, key=sets.count, default=None)
    return [row for row in rows if _scored(row) and row["scores"].test_set == main]


def _scored(row: dict) -> bool:
    return isinstance(row["scores"], RowScores)


def paired(row: dict, other: dict | None, column: str = COMPARED) -> Difference | None:
    """row - other over the test queries both were scored on; None where they cannot be paired."""
    if other is None or row is other or not (_scored(row) and _scored(other)) \
            or row["scores"].test_set != other["scores"].test_set:
        return None
    return paired_bootstrap(row["scores"].matrices[column], other["scores"].matrices[column],
                            strata=row["scores"].strata)


def _verdict(row: dict, other: dict | None, name: str, difference: Difference | None,
             words: tuple[str, str]) -> str:
    """`words[0]` if the difference is significant, else `words[1]`, with its p-value; or why not."""
    if row is other:
        return name
    if difference is not None:
        return f"{words[0] if difference.significant else words[1]} (p={difference.p_value:.3f})"
    if not _scored(row):
        return row["scores"]
    if other is None or not _scored(other):
        return f"n/a (the {name} row has no per-query scores)"
    return f"n/a (another test set than the {name} row)"
