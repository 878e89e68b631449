"""Bootstrap confidence intervals on per-query scores: is a difference real, or query and seed noise?

A mean nDCG@10 over a few hundred queries moves by a few points when the queries change, and a
fine-tuned model moves by as much when only its seed changes. Intervals here are percentile
bootstraps, seeded, so the same scores always give the same interval. numpy only.

Scores are one run's per-query values, or a (seeds x queries) matrix for several seeds of the same
config over the same queries (`stack`). Several seeds are combined by a two-level bootstrap: each
resample draws queries with replacement and, independently, seeds with replacement, and scores the
mean over the drawn seeds of the drawn queries. So the interval holds both the test-set noise and
the training-seed noise; averaging the seeds per query first would drop the seed noise and call a
difference smaller than the seed spread significant. With one seed there is no seed noise to see
(the interval is then a plain query bootstrap), and with 2-3 seeds the seed level is rough: a
bootstrap of n seeds shrinks their variance by (n-1)/n.

A paired comparison resamples the same queries for both runs (their per-query differences are far
less noisy than either run), and each run's seeds independently (seed s of two configs trains two
unrelated models).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95
# Resampled per-query values held at once, whatever the number of queries.
_VALUES_PER_BLOCK = 2**22


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval [low, high]."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """Mean of a - b, its interval, whether the interval excludes 0, and a two-sided p-value."""

    mean: float
    low: float
    high: float
    significant: bool
    p_value: float


def stack(per_seed: Sequence[dict[str, float]], query_ids: Sequence[str] | None = None) -> np.ndarray:
    """(seeds x queries) matrix of per-query scores, columns in `query_ids` order (default: the first
    seed's); every seed must have scored exactly these queries, or pairing them would lie."""
    if not per_seed:
        raise ValueError("no seeds to stack")
    query_ids = list(per_seed[0]) if query_ids is None else list(query_ids)
    for number, scores in enumerate(per_seed, 1):
        if set(scores) != set(query_ids):
            missing, extra = sorted(set(query_ids) - set(scores)), sorted(set(scores) - set(query_ids))
            raise ValueError(f"seed {number} of {len(per_seed)} scored other queries: missing "
                             f"{missing[:3]} ({len(missing)}), extra {extra[:3]} ({len(extra)})")
    return np.array([[scores[qid] for qid in query_ids] for scores in per_seed], dtype=float)


def macro_mean(run: np.ndarray, strata: np.ndarray | None = None) -> float:
    """The mean score; with `strata` (each query's group, e.g. its data source) the mean of the
    groups' means, each group counting the same however many queries it has."""
    if strata is None:
        return float(run.mean())
    return float(np.mean([run[:, strata == group].mean() for group in np.unique(strata)]))


def bootstrap_mean(scores, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0, strata: np.ndarray | None = None) -> Interval:
    """Percentile bootstrap interval of the mean score (per-query vector or seeds x queries); with
    `strata`, of the macro mean, queries resampled within their group."""
    run = _matrix(scores, "scores")
    (means,) = _resampled_means([run], resamples, seed, strata)
    low, high = _percentiles(means, confidence)
    return Interval(macro_mean(run, strata), low, high)


def paired_bootstrap(a, b, resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
                     seed: int = 0, strata: np.ndarray | None = None) -> Difference:
    """Bootstrap of mean(a) - mean(b) over the same queries, in the same column order.

    The p-value is two-sided, 2 x the share of resampled differences on the far side of 0, with
    the +1 correction so it is never 0 (at least 2 / (resamples + 1)).
    """
    run_a, run_b = _matrix(a, "a"), _matrix(b, "b")
    if run_a.shape[1] != run_b.shape[1]:
        raise ValueError(f"a has {run_a.shape[1]} queries and b {run_b.shape[1]}; "
                         "a paired comparison needs the same queries")
    means_a, means_b = _resampled_means([run_a, run_b], resamples, seed, strata)
    differences = means_a - means_b
    low, high = _percentiles(differences, confidence)
    far_side = min(np.count_nonzero(differences <= 0), np.count_nonzero(differences >= 0))
    p_value = min(1.0, 2 * (far_side + 1) / (resamples + 1))
    return Difference(macro_mean(run_a, strata) - macro_mean(run_b, strata), low, high, bool(low > 0 or high < 0),
                      p_value)


def _matrix(scores, name: str) -> np.ndarray:
    run = np.asarray(scores, dtype=float)
    run = run[None, :] if run.ndim == 1 else run
    if run.ndim != 2 or run.size == 0:
        raise ValueError(f"{name}: expected per-query scores or a (seeds x queries) matrix, "
                         f"got shape {np.shape(scores)}")
    if not np.isfinite(run).all():
        raise ValueError(f"{name}: {np.count_nonzero(~np.isfinite(run))} scores are NaN or infinite")
    return run


def _resampled_means(runs: list[np.ndarray], resamples: int, seed: int,
                     strata: np.ndarray | None = None) -> list[np.ndarray]:
    """Each run's mean in each resample: queries drawn once for all runs, seeds per run; with
    `strata`, queries drawn within each group as many as it has, and the mean of the groups' means.

    Queries and seeds draw from separate generators, so adding a seed changes no query draw.
    """
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: must be at least 1, e.g. {RESAMPLES}")
    query_rng, *seed_rngs = np.random.default_rng(seed).spawn(1 + len(runs))
    n_queries = runs[0].shape[1]
    means = [np.empty(resamples) for _ in runs]
    block = max(1, _VALUES_PER_BLOCK // n_queries)
    groups = [np.arange(n_queries)] if strata is None else [np.flatnonzero(strata == g) for g in np.unique(strata)]
    # Each drawn query's weight in the mean: 1 / queries with one group, 1 / (groups x its group's size).
    share = np.concatenate([np.full(len(group), 1 / (len(groups) * len(group))) for group in groups])
    for start in range(0, resamples, block):
        size = min(block, resamples - start)
        if strata is None:
            queries = query_rng.integers(0, n_queries, size=(size, n_queries))
        else:
            queries = np.concatenate([group[query_rng.integers(0, len(group), size=(size, len(group)))]
                                      for group in groups], axis=1)
        for run, seed_rng, out in zip(runs, seed_rngs, means):
            n_seeds = run.shape[0]
            drawn = seed_rng.integers(0, n_seeds, size=(size, n_seeds))
            weights = (drawn[:, :, None] == np.arange(n_seeds)).mean(axis=1)  # share of each seed
            per_query = np.take_along_axis(weights @ run, queries, axis=1)
            out[start:start + size] = per_query.mean(axis=1) if strata is None else per_query @ share
    return means


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be between 0 and 1, e.g. 0.95")
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)
