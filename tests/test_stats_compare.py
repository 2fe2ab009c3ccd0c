"""stats.compare (hpo.Results.compare's numbers) and summarize's edge cases, each value
against scipy or the textbook formula computed here."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hpo.stats import (
    Difference,
    compare,
    compare_to_best,
    difference,
    mean_curve,
    reduce_history,
    summarize,
    verdict,
)

# Seeds 1, 2 and 3 in common; A has 4 values, B has 4; given in different seed orders.
A = {3: 0.81, 0: 0.92, 2: 0.86, 1: 0.88}
B = {5: 0.70, 1: 0.79, 3: 0.74, 2: 0.83}


def interval(x: np.ndarray) -> tuple[float, float]:
    return stats.t.interval(0.95, x.size - 1, loc=x.mean(), scale=stats.sem(x))


def test_compare_is_welch_cohens_d_and_the_paired_test_on_the_common_seeds():
    result = compare(A, B)
    x, y = np.array(list(A.values())), np.array(list(B.values()))
    pooled = math.sqrt((3 * x.var(ddof=1) + 3 * y.var(ddof=1)) / 6)
    common = [1, 2, 3]
    d = np.array([A[s] - B[s] for s in common])
    welch_t = (x.mean() - y.mean()) / math.sqrt(x.var(ddof=1) / 4 + y.var(ddof=1) / 4)
    expected = {
        "n_a": 4, "mean_a": x.mean(), "std_a": x.std(ddof=1),
        "ci95_low_a": interval(x)[0], "ci95_high_a": interval(x)[1],
        "n_b": 4, "mean_b": y.mean(), "std_b": y.std(ddof=1),
        "ci95_low_b": interval(y)[0], "ci95_high_b": interval(y)[1],
        "difference": x.mean() - y.mean(),
        "welch_t": welch_t, "welch_p": stats.ttest_ind(x, y, equal_var=False).pvalue,
        "cohens_d": (x.mean() - y.mean()) / pooled,
        "paired_n": 3,
        "mean_difference": d.mean(),
        "paired_t": d.mean() / (d.std(ddof=1) / math.sqrt(3)),
        "paired_p": stats.ttest_rel([A[s] for s in common], [B[s] for s in common]).pvalue,
        "cohens_dz": d.mean() / d.std(ddof=1),
        "difference_ci95_low": interval(d)[0], "difference_ci95_high": interval(d)[1],
    }
    assert result.keys() == expected.keys()
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, rel=1e-9), key


def test_cohens_d_pools_the_variances_weighted_by_their_degrees_of_freedom():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 3: 7.0, 4: 11.0}, {10: 3.0, 11: 5.0}  # no seed in common
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    pooled = math.sqrt((4 * x.var(ddof=1) + 1 * y.var(ddof=1)) / 5)
    result = compare(a, b)
    assert result["cohens_d"] == pytest.approx((x.mean() - y.mean()) / pooled)
    assert result["paired_n"] == 0 and "paired_p" not in result and "cohens_dz" not in result


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
def test_compare_without_spread_gives_nan_effect_sizes_not_an_error():
    # Every seed the same difference (d_z: 0/0) and each side constant (d: pooled std 0).
    result = compare({0: 0.5, 1: 0.5, 2: 0.5}, {0: 0.25, 1: 0.25, 2: 0.25})
    assert result["difference"] == 0.25 and result["mean_difference"] == 0.25
    assert math.isnan(result["cohens_d"]) and math.isnan(result["cohens_dz"])
    one = compare({0: 0.9}, {0: 0.8})  # one value each: no spread at all
    assert (one["n_a"], one["n_b"], one["paired_n"]) == (1, 1, 1)
    assert one["difference"] == pytest.approx(0.1) and math.isnan(one["cohens_d"])


def test_summarize_of_a_sample_with_sem_one():
    # [0, 2]: std sqrt(2), sem exactly 1.0; the CI is the mean -+ t(0.975, 1).
    s = summarize([0.0, 2.0])
    t = stats.t.ppf(0.975, 1)
    assert s.sem == 1.0
    assert (s.ci95_low, s.ci95_high) == pytest.approx((1.0 - t, 1.0 + t))


def test_a_spread_too_small_for_floats_gives_a_zero_width_ci():
    s = summarize([1e-200, 2e-200])  # distinct values whose variance underflows to 0
    assert s.std == 0.0 and s.sem == 0.0
    assert s.ci95_low == s.ci95_high == s.mean == pytest.approx(1.5e-200)


def test_empty_input_is_refused_with_its_reason():
    with pytest.raises(ValueError, match="^a run with no epochs has no value$"):
        reduce_history([], "last", "maximize")
    with pytest.raises(ValueError, match="^no values to summarize$"):
        summarize([])
    assert mean_curve([]) == []
    assert mean_curve([[1.0], [float("nan"), 5.0]]) == [1.0, 5.0]


def test_a_trial_better_than_the_best_on_the_common_seeds_is_called_better():
    # The best has the best mean over all its seeds; on the three seeds both ran, trial 1 is
    # 0.05 above it every time (paired t = 8.66, df 2).
    samples = {0: {0: 0.80, 1: 0.81, 2: 0.82, 3: 0.99, 4: 0.99}, 1: {0: 0.85, 1: 0.87, 2: 0.86}}
    (row,) = compare_to_best(samples, "maximize")
    p = stats.ttest_rel([0.85, 0.87, 0.86], [0.80, 0.81, 0.82]).pvalue
    assert (row.trial, row.best, row.difference.test) == (1, 0, "paired")
    assert row.verdict == f"better (p_holm={p:.2g})" and p < 0.05
    losses = {t: {s: -v for s, v in values.items()} for t, values in samples.items()}
    assert compare_to_best(losses, "minimize")[0].verdict == f"better (p_holm={p:.2g})"
    d = Difference("paired", 3, 3, 0.02, 0.01, 0.03, 0.004, None)
    assert verdict(d, 0.004, True, "maximize") == "better (p_holm=0.004)"
    assert verdict(d, 0.004, True, "minimize") == "worse (p_holm=0.004)"


def test_welch_between_two_constant_samples_is_not_testable():
    d = difference({0: 0.5, 1: 0.5}, {2: 0.75, 3: 0.75, 4: 0.75})
    assert (d.test, d.untestable, d.diff) == ("welch", "zero variance", -0.25)
    assert math.isnan(d.p) and math.isnan(d.ci95_low) and math.isnan(d.ci95_high)
    d = difference({0: 0.5, 1: 0.5}, {2: 0.75, 3: 0.5})  # one side varies: testable
    assert d.untestable is None and not math.isnan(d.p)
