"""Bootstrap intervals: reproducible, equal to the exact bootstrap distribution on a toy example,
paired tests that see a real difference and not a null one, and seed noise kept in the interval."""

import itertools

import numpy as np
import pytest

from pipeline.report.stats import bootstrap_mean, paired_bootstrap, stack

TOY = [0.0, 0.0, 0.0, 1.0, 1.0]


def _exact_percentile_interval(scores, confidence=0.95):
    """Every one of the n**n equally likely resamples, and the quantiles of their means."""
    means = sorted(np.mean([scores[i] for i in draw])
                   for draw in itertools.product(range(len(scores)), repeat=len(scores)))
    tail = (1 - confidence) / 2
    cdf = np.arange(1, len(means) + 1) / len(means)
    return means[np.searchsorted(cdf, tail)], means[np.searchsorted(cdf, 1 - tail)]


def test_the_same_seed_gives_the_same_interval_and_another_seed_another():
    scores = np.random.default_rng(1).uniform(size=300)
    assert bootstrap_mean(scores, seed=7) == bootstrap_mean(scores, seed=7)
    assert bootstrap_mean(scores, seed=7) != bootstrap_mean(scores, seed=8)
    assert paired_bootstrap(scores, scores[::-1], seed=7) == paired_bootstrap(scores, scores[::-1], seed=7)


def test_toy_interval_is_the_exact_bootstrap_distributions_percentiles():
    # The mean of a resample is (ones drawn) / 5, ones ~ Binomial(5, 0.4): P(0) = 0.078 > 2.5 %,
    # P(5) = 0.010 < 2.5 % < P(>=4) = 0.087; so the 95 % interval is [0.0, 0.8].
    assert _exact_percentile_interval(TOY) == (0.0, 0.8)
    interval = bootstrap_mean(TOY)
    assert (interval.mean, interval.low, interval.high) == (0.4, 0.0, 0.8)


def test_paired_toy_difference_has_the_exact_interval_and_p_value():
    b = np.array([0.3, 0.5, 0.2, 0.9, 0.4])
    difference = paired_bootstrap(b + TOY, b)
    assert (difference.low, difference.high) == pytest.approx(_exact_percentile_interval(TOY))
    assert difference.mean == pytest.approx(0.4) and not difference.significant
    # A resampled difference is <= 0 only when no 1 is drawn: 0.6**5; two-sided, 2 x that.
    assert difference.p_value == pytest.approx(2 * 0.6**5, abs=0.05)


def test_paired_bootstrap_flags_a_clear_gain_that_separate_intervals_miss():
    rng = np.random.default_rng(0)
    base = rng.uniform(size=200)  # queries differ a lot; the gain per query is steady
    tuned = np.clip(base + 0.03 + rng.normal(0, 0.02, size=200), 0, 1)
    difference = paired_bootstrap(tuned, base)
    assert difference.significant and 0 < difference.low < difference.mean < difference.high
    assert difference.p_value < 0.01
    assert bootstrap_mean(tuned).low < bootstrap_mean(base).high  # unpaired, the intervals overlap


def test_paired_bootstrap_does_not_flag_a_zero_difference():
    base = np.random.default_rng(0).uniform(0.2, 0.8, size=200)
    swings = np.tile([0.15, -0.15], 100)  # every query moves, the mean does not
    difference = paired_bootstrap(base + swings, base)
    assert difference.mean == pytest.approx(0.0, abs=1e-12)
    assert not difference.significant and difference.low < 0 < difference.high
    assert difference.p_value > 0.5
    identical = paired_bootstrap(base, base)
    assert (identical.low, identical.high, identical.significant, identical.p_value) == (0, 0, False, 1)


def test_seed_spread_stays_in_the_interval():
    base = np.random.default_rng(0).uniform(size=200)
    # Two seeds that agree are one seed: the query draws do not depend on the seed count.
    one, two = bootstrap_mean(base), bootstrap_mean(np.stack([base, base]))
    assert (two.mean, two.low, two.high) == pytest.approx((one.mean, one.low, one.high), abs=1e-12)
    # The tuned config gains 0.07 on average, but one of its seeds loses 0.06 on every query:
    # averaging seeds per query first would call it certain; the seed level keeps the doubt.
    tuned = np.stack([base + 0.2, base - 0.06])
    averaged = paired_bootstrap(tuned.mean(axis=0), base)
    assert averaged.significant and averaged.low == pytest.approx(0.07)
    both_levels = paired_bootstrap(tuned, np.stack([base, base]))
    assert both_levels.mean == pytest.approx(0.07)
    assert not both_levels.significant and both_levels.low == pytest.approx(-0.06)


def test_stack_orders_seeds_by_query_id_and_refuses_other_queries():
    seeds = [{"q1": 0.5, "q2": 1.0}, {"q2": 0.0, "q1": 0.25}]
    assert stack(seeds).tolist() == [[0.5, 1.0], [0.25, 0.0]]
    assert stack(seeds, ["q2", "q1"]).tolist() == [[1.0, 0.5], [0.0, 0.25]]
    with pytest.raises(ValueError, match=r"seed 2 of 2 scored other queries: missing \['q2'\]"):
        stack([{"q1": 0.5, "q2": 1.0}, {"q1": 0.25, "q3": 0.0}])


@pytest.mark.parametrize("call, message", [
    (lambda: paired_bootstrap([0.1, 0.2], [0.1, 0.2, 0.3]), "a has 2 queries and b 3"),
    (lambda: bootstrap_mean([]), "expected per-query scores"),
    (lambda: bootstrap_mean([0.1, float("nan")]), "1 scores are NaN"),
    (lambda: bootstrap_mean([0.1, 0.2], confidence=95), "confidence=95"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()
