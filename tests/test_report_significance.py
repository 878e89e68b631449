"""The report's comparisons on per-query scores built by hand: which rows differ significantly,
which is best, which is recommended, and n/a where runs cannot be compared."""

import numpy as np
import pytest

from pipeline.report.significance import compare, recommendation
from pipeline.report.stats import bootstrap_mean, paired_bootstrap

QUERIES = [f"q{i}" for i in range(200)]
BASE = np.random.default_rng(0).uniform(0.35, 0.55, size=200)


def _scores(values, test_set="T") -> dict:
    """A run's per_query.json content."""
    return {"test_set": test_set, "queries": {q: {"ndcg_at_10": float(v), "mrr_at_10": float(v) / 2}
                                              for q, v in zip(QUERIES, values)}}


def _row(k: int, seconds: float, runs: list[str], per_run: dict) -> dict:
    ndcg = [np.mean([q["ndcg_at_10"] for q in per_run[r]["queries"].values()]) if per_run[r] else 0.5
            for r in runs]
    return {"k": k, "loss": "mnrl", "config": "", "runs": " ".join(runs), "train time (s)": (seconds, None),
            "nDCG@10": (float(np.mean(ndcg)), None)}


@pytest.fixture
def sweep():
    steady, swing = np.tile([0.01, -0.01], 100), np.tile([0.3, -0.3], 100)
    per_run = {"k0": _scores(BASE), "k4": _scores(BASE + 0.10 + steady), "k8": _scores(BASE + 0.10 + swing),
               "k16a": _scores(BASE + 0.11), "k16b": _scores(BASE + 0.11), "k32": _scores(BASE + 0.12),
               "old": None, "other": _scores(BASE + 0.5, "U")}
    rows = [_row(0, 1.0, ["k0"], per_run), _row(4, 3.0, ["k4"], per_run), _row(8, 2.0, ["k8"], per_run),
            _row(16, 5.0, ["k16a", "k16b"], per_run), _row(32, 9.0, ["k32"], per_run),
            _row(64, 0.5, ["old"], per_run), _row(2, 0.7, ["other"], per_run)]
    return rows, per_run


def test_rows_are_compared_with_the_reference_and_the_best_and_the_cheapest_peer_is_recommended(sweep):
    rows, per_run = sweep
    comparison = compare(rows, per_run)
    by_k = {row["k"]: row for row in rows}
    assert comparison.reference is by_k[0] and comparison.best is by_k[32]
    assert by_k[0]["significant at 95 %"] == "reference" and by_k[32]["vs best"] == "best"
    assert by_k[4]["significant at 95 %"].startswith("yes (p=0.00")  # +0.10 on every query
    assert by_k[0]["vs best"].startswith("below (p=")
    # k=4 and k=8 are both 0.02 below k=32 on average; k=4 on every query (±0.01), k=8 swinging
    # ±0.3 a query, which 200 queries cannot tell from 0; k=16 is 0.01 below on every query
    assert by_k[4]["vs best"].startswith("below (p=") and by_k[16]["vs best"].startswith("below (p=")
    assert by_k[8]["vs best"].startswith("not below (p=")
    assert comparison.recommended is by_k[8]  # cheaper than k=32, the only other row not below
    line = recommendation(comparison, rows)
    assert line.startswith("Recommendation: k=8 mnrl: the cheapest row by training time (2.0 s)")
    assert f"best row's {by_k[32]['nDCG@10'][0]:.4f} (k=32 mnrl; paired bootstrap, Δ -0.02" in line
    # k=2 has the highest mean of all, on another test set: not comparable, so not the best
    assert "Not considered: k=64 mnrl, n/a (no per-query scores); k=2 mnrl, n/a (another test set" in line


def test_intervals_and_differences_are_the_stats_modules_own(sweep):
    rows, per_run = sweep
    compare(rows, per_run)
    by_k = {row["k"]: row for row in rows}
    ndcg = {run: [q["ndcg_at_10"] for q in per_run[run]["queries"].values()] for run in ("k0", "k4", "k16a")}
    assert by_k[4]["nDCG@10 CI"] == bootstrap_mean(ndcg["k4"])
    assert by_k[4]["Δ CI"] == paired_bootstrap(ndcg["k4"], ndcg["k0"])
    assert by_k[16]["nDCG@10 CI"] == bootstrap_mean(np.stack([ndcg["k16a"], ndcg["k16a"]]))  # two seeds
    assert by_k[4]["MRR@10 CI"].mean == pytest.approx(by_k[4]["nDCG@10 CI"].mean / 2)


def test_rows_that_cannot_be_compared_say_why(sweep):
    rows, per_run = sweep
    per_run["k16b"] = _scores(BASE + 0.11, "V")  # one seed scored on another test set
    comparison = compare(rows, per_run)
    by_k = {row["k"]: row for row in rows}
    assert by_k[64]["nDCG@10 CI"] is None and by_k[64]["significant at 95 %"] == "n/a (no per-query scores)"
    assert by_k[16]["significant at 95 %"] == "n/a (seeds scored different test sets)"
    assert by_k[2]["significant at 95 %"] == "n/a (another test set than the reference row)"
    assert by_k[2]["nDCG@10 CI"] is not None  # its own interval is still there
    pairs = {(a["k"], b["k"]) for a, b, column, _ in comparison.pairs}
    assert pairs == {(0, 4), (0, 8), (0, 32), (4, 8), (4, 32), (8, 32)}


def test_without_any_per_query_scores_there_is_no_recommendation(sweep):
    rows, per_run = sweep
    comparison = compare(rows, dict.fromkeys(per_run))
    assert comparison.best is None and comparison.recommended is None
    assert all(row["nDCG@10 CI"] is None for row in rows)
    assert recommendation(comparison, rows).startswith("Recommendation: n/a: no run here saved per-query")


def _budget_row(k: int, budget: float, negatives: str, run: str, per_run: dict) -> dict:
    return _row(k, 1.0, [run], per_run) | {"budget": budget, "unit": "texts", "negatives": negatives,
                                           "spent": (budget, None)}


def test_at_equal_cost_each_budget_gets_its_best_row_and_the_smallest_sufficient_budget_is_named():
    from pipeline.report.budgets import at_equal_cost, lines, smallest_sufficient

    steady = np.tile([0.01, -0.01], 100)
    per_run = {"a": _scores(BASE), "b": _scores(BASE + 0.08 + steady), "c": _scores(BASE + 0.02),
               "d": _scores(BASE + 0.15), "e": _scores(BASE + 0.14 + np.tile([0.2, -0.2], 100))}
    rows = [_budget_row(0, 1000, "none", "a", per_run), _budget_row(8, 1000, "bank online", "b", per_run),
            _budget_row(8, 4000, "live", "c", per_run), _budget_row(8, 4000, "bank online", "d", per_run),
            _budget_row(32, 4000, "bank online", "e", per_run)]
    compare(rows, per_run)
    answers = at_equal_cost(rows)
    assert [(a.budget, a.best["runs"]) for a in answers] == [(1000, "b"), (4000, "d")]
    small, large = answers
    assert small.vs_best[id(rows[0])].significant  # 0.08 below on every query
    assert [row["runs"] for row in large.as_good()] == ["d", "e"]  # e: 0.01 below, swinging ±0.2 a query
    found, difference = smallest_sufficient(answers)
    assert found is large and difference is None  # 1000's best is 0.07 below 4000's on every query
    text = lines(answers)
    assert text[0].startswith("For budget 1,000 texts: k=8, mnrl, negatives=bank online (nDCG@10 ")
    assert "not significantly below it at 95 %: k=32, mnrl, negatives=bank online" in text[1]
    assert text[-1].startswith("Smallest budget whose quality is not significantly below the best: 4,000 texts")


def test_without_budgets_there_is_no_answer_at_equal_cost(sweep):
    from pipeline.report.budgets import at_equal_cost, smallest_sufficient

    rows, per_run = sweep
    for row in rows:
        row["budget"] = None
    compare(rows, per_run)
    assert at_equal_cost(rows) == [] and smallest_sufficient([]) is None


def test_a_macro_mean_counts_each_source_the_same_and_resamples_within_sources():
    """150 queries of source 0 at 0.2, 50 of source 1 at 0.8: the macro mean is 0.5 (not the 0.35 of
    all queries), and resampling within sources cannot move it, while resampling all queries can."""
    from pipeline.report.stats import macro_mean

    scores, strata = np.array([[0.2] * 150 + [0.8] * 50]), np.array([0] * 150 + [1] * 50)
    assert macro_mean(scores, strata) == pytest.approx(0.5) and macro_mean(scores) == pytest.approx(0.35)
    within = bootstrap_mean(scores, strata=strata)
    assert within.low == pytest.approx(0.5) and within.high == pytest.approx(0.5)
    anywhere = bootstrap_mean(scores)
    assert anywhere.high - anywhere.low > 0.05


def _sources(de_shift: float, fr_shift: float) -> dict:
    """A two-source run's per_query.json: 100 German and 100 French queries."""
    values = np.concatenate([BASE[:100] + de_shift, BASE[100:] + fr_shift])
    ids = [f"de/q{i}" for i in range(100)] + [f"fr/q{i}" for i in range(100)]
    return {"test_set": "DF", "sources": ["de", "fr"],
            "queries": {q: {"ndcg_at_10": float(v), "mrr_at_10": float(v) / 2} for q, v in zip(ids, values)}}


def test_a_row_better_on_average_but_worse_on_one_source_says_so():
    from pipeline.report.significance import by_source, worse_sources

    per_run = {"ref": _sources(0.0, 0.0), "new": _sources(-0.05, 0.15)}
    ids = [f"{s}/q{i}" for s in ("de", "fr") for i in range(100)]
    rows = [{"k": k, "loss": "mnrl", "config": "", "runs": run, "train time (s)": (t, None),
             "nDCG@10": (float(np.mean([per_run[run]["queries"][q]["ndcg_at_10"] for q in ids])), None)}
            for k, run, t in ((0, "ref", 1.0), (8, "new", 2.0))]
    comparison = compare(rows, per_run)
    ref, new = rows
    assert new["Δ CI"].mean == pytest.approx(0.05) and new["Δ CI"].significant
    table = by_source(new, ref)
    assert table["de"][1].mean == pytest.approx(-0.05) and table["fr"][1].mean == pytest.approx(0.15)
    assert worse_sources(new, ref) == ["de"]
    assert "significantly worse on de." in recommendation(comparison, rows)
