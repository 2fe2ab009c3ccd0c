import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from hpo.stats import (
    compare_to_best,
    difference,
    epoch_order,
    holm,
    mean_curve,
    reduce_history,
    summarize,
)


def test_summary_matches_numpy_and_scipy():
    values = [0.91, 0.93, 0.925, 0.94, 0.918]
    s = summarize(values)
    x = np.array(values)
    assert s.n == 5
    assert s.mean == pytest.approx(x.mean())
    assert s.var == pytest.approx(x.var(ddof=1))
    assert s.std == pytest.approx(x.std(ddof=1))
    assert s.sem == pytest.approx(x.std(ddof=1) / math.sqrt(5))
    low, high = stats.t.interval(0.95, 4, loc=x.mean(), scale=stats.sem(x))
    assert (s.ci95_low, s.ci95_high) == pytest.approx((low, high))
    assert s.ci95_low < s.mean < s.ci95_high


def test_summary_of_one_value_has_no_spread():
    s = summarize([0.5])
    assert (s.n, s.mean, s.std, s.ci95_low) == (1, 0.5, None, None)


def test_summary_of_identical_values_has_zero_width_ci():
    s = summarize([0.25, 0.25, 0.25])
    assert s.std == 0 and s.ci95_low == s.ci95_high == 0.25


@pytest.mark.parametrize(
    ("reduce", "direction", "expected"),
    [("last", "maximize", 0.4), ("best", "maximize", 0.5), ("best", "minimize", 0.1)],
)
def test_reduce_history(reduce, direction, expected):
    assert reduce_history([0.1, 0.5, 0.4], reduce, direction) == expected


def test_mean_curve_averages_the_runs_that_reached_each_epoch():
    assert mean_curve([[1.0, 2.0, 3.0], [3.0, 4.0]]) == [2.0, 3.0, 3.0]


def test_epoch_order_is_a_seeded_permutation():
    a, b = epoch_order(1, 0, 100), epoch_order(1, 0, 100)
    assert (a == b).all() and sorted(a) == list(range(100))
    assert not (epoch_order(1, 1, 100) == a).all()
    assert not (epoch_order(2, 0, 100) == a).all()


# --- Comparing trials with the best: pure functions against scipy, statsmodels and formulas ---

# Accuracy-like values on a grid (a validation split of k examples gives multiples of 1/k): ties
# and all-equal samples come up often, as they do in real studies.
grid_values = st.integers(0, 200).map(lambda k: k / 200)
some_floats = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
quick = settings(max_examples=60, deadline=None)
# statsmodels' multipletests runs gc.collect() on every Holm call (~0.1 s in a test process).
few = settings(max_examples=20, deadline=None)


@quick
@given(st.lists(some_floats, min_size=1, max_size=12))
def test_summarize_equals_numpy_and_scipy_on_any_sample(values):
    s, x = summarize(values), np.array(values)
    assert s.n == len(values) and s.mean == pytest.approx(x.mean(), rel=1e-9, abs=1e-9)
    if len(values) == 1:
        assert (s.var, s.std, s.sem, s.ci95_low, s.ci95_high) == (None,) * 5
        return
    assert s.var == pytest.approx(x.var(ddof=1), rel=1e-9, abs=1e-9)
    assert s.sem == pytest.approx(stats.sem(x), rel=1e-9, abs=1e-9)
    if s.sem > 0:
        low, high = stats.t.interval(0.95, len(x) - 1, loc=s.mean, scale=s.sem)
        assert (s.ci95_low, s.ci95_high) == pytest.approx((low, high), rel=1e-9, abs=1e-9)
    assert s.ci95_low <= s.mean <= s.ci95_high


@quick
@given(some_floats, st.integers(1, 12))
def test_summarize_of_identical_values_is_that_value_with_no_spread(value, n):
    s = summarize([value] * n)
    assert s.mean == value  # exactly: not numpy's rounded n * value / n
    if n > 1:
        assert (s.var, s.std, s.sem, s.ci95_low, s.ci95_high) == (0, 0, 0, value, value)


@quick
@given(st.lists(some_floats, min_size=0, max_size=8), st.integers(0, 8))
def test_a_nan_value_makes_the_summary_nan_it_is_not_dropped(values, position):
    values.insert(min(position, len(values)), math.nan)
    s = summarize(values)
    assert s.n == len(values) and math.isnan(s.mean)
    spread = (s.var, s.std, s.sem, s.ci95_low, s.ci95_high)
    assert spread == (None,) * 5 if len(values) == 1 else all(math.isnan(v) for v in spread)


def _seed_dict(values, seeds, draw_order):
    """Seed → value, inserted in a shuffled order: a comparison must pair by seed, not by order."""
    pairs = list(zip(seeds, values, strict=True))
    return dict(draw_order.shuffle(pairs) or pairs)


@quick
@given(st.lists(st.tuples(grid_values, grid_values), min_size=2, max_size=10), st.randoms())
def test_paired_difference_equals_scipy_and_the_t_formula(pairs, order):
    seeds = list(range(100, 100 + len(pairs)))
    x, y = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    d = difference(_seed_dict(x, seeds, order), _seed_dict(y, seeds, order))
    assert (d.test, d.n, d.n_other) == ("paired", len(pairs), len(pairs))
    assert d.diff == pytest.approx((x - y).mean(), abs=1e-12)
    if (x - y == (x - y)[0]).all():
        assert d.untestable == "zero variance" and math.isnan(d.p) and math.isnan(d.ci95_low)
        return
    assert d.untestable is None
    assert d.p == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-9, abs=1e-12)
    half = stats.t.ppf(0.975, len(x) - 1) * (x - y).std(ddof=1) / math.sqrt(len(x))
    assert (d.ci95_low, d.ci95_high) == pytest.approx((d.diff - half, d.diff + half), abs=1e-9)
    if abs(d.p - 0.05) > 1e-9:  # the test and its CI agree: p < .05 exactly when 0 is outside
        assert (d.p < 0.05) == (not d.ci95_low <= 0 <= d.ci95_high)


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")
@quick
@given(st.lists(grid_values, min_size=1, max_size=8), st.lists(grid_values, min_size=1,
                                                                max_size=8), st.randoms())
def test_welch_difference_without_common_seeds_equals_scipy_and_the_formula(xs, ys, order):
    x, y = np.array(xs), np.array(ys)
    a = _seed_dict(x, range(len(x)), order)
    b = _seed_dict(y, range(50, 50 + len(y)), order)  # no seed in common
    d = difference(a, b)
    assert (d.test, d.n, d.n_other) == ("welch", len(x), len(y))
    assert d.diff == pytest.approx(x.mean() - y.mean(), abs=1e-12)
    if min(len(x), len(y)) < 2:
        assert d.untestable == "fewer than 2 seeds" and math.isnan(d.p)
        return
    if (x == x[0]).all() and (y == y[0]).all():
        assert d.untestable == "zero variance" and math.isnan(d.p)
        return
    assert d.p == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue, rel=1e-9,
                                abs=1e-12)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)  # Welch–Satterthwaite
    df = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(y) - 1))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert (d.ci95_low, d.ci95_high) == pytest.approx((d.diff - half, d.diff + half), abs=1e-9)


@quick
@given(st.lists(grid_values, min_size=2, max_size=6), st.integers(0, 5), st.booleans())
def test_a_nan_value_makes_a_comparison_not_testable(values, position, in_a):
    seeds = range(len(values))
    with_nan = list(values)
    with_nan[position % len(values)] = math.nan
    a, b = dict(zip(seeds, with_nan, strict=True)), dict(zip(seeds, values, strict=True))
    d = difference(a, b) if in_a else difference(b, a)
    assert d.untestable == "NaN value"
    assert math.isnan(d.p) and math.isnan(d.diff) and math.isnan(d.ci95_high)


def test_paired_uses_only_the_common_seeds_and_welch_below_two():
    a = {0: 0.90, 1: 0.80, 2: 0.85, 7: 0.10}
    b = {0: 0.70, 1: 0.75, 2: 0.60, 9: 0.99}
    d = difference(a, b)
    assert (d.test, d.n) == ("paired", 3)
    assert d.p == pytest.approx(stats.ttest_rel([0.90, 0.80, 0.85], [0.70, 0.75, 0.60]).pvalue)
    d = difference({0: 0.9, 1: 0.8, 2: 0.7}, {2: 0.5, 3: 0.6, 4: 0.4})  # one seed in common
    assert d.test == "welch" and (d.n, d.n_other) == (3, 3)


def holm_by_hand(pvalues: list[float]) -> list[float]:
    """Holm's adjusted p-values from the definition: the k-th smallest of m times (m - k + 1),
    a running maximum in that order, capped at 1."""
    m, adjusted, running = len(pvalues), [0.0] * len(pvalues), 0.0
    for k, j in enumerate(sorted(range(m), key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - k) * pvalues[j]))
        adjusted[j] = running
    return adjusted


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(st.floats(0, 1), st.just(math.nan)), max_size=8),
       st.floats(0.001, 0.999))
def test_holm_is_the_step_down_formula_over_the_p_values_that_are_not_nan(pvalues, alpha):
    adjusted, rejected = holm(pvalues, alpha)
    tested = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    for i, p in enumerate(pvalues):
        if math.isnan(p):  # not a hypothesis: not counted, not rejected
            assert math.isnan(adjusted[i]) and not rejected[i]
    expected = holm_by_hand([pvalues[i] for i in tested])
    assert [adjusted[i] for i in tested] == pytest.approx(expected)
    assert all(adjusted[i] >= pvalues[i] for i in tested)
    # statsmodels rejects when p_holm <= alpha; rounding aside, so must we.
    for i, p_holm in zip(tested, expected, strict=True):
        if abs(p_holm - alpha) > 1e-12:
            assert rejected[i] == (p_holm <= alpha)


def test_holm_equals_statsmodels_with_untestable_comparisons_left_out():
    pvalues = [0.04, math.nan, 0.001, 0.03, math.nan, 0.5]
    adjusted, rejected = holm(pvalues, 0.05)
    reject, corrected, _, _ = multipletests([0.04, 0.001, 0.03, 0.5], alpha=0.05,
                                            method="holm")
    assert [adjusted[i] for i in (0, 2, 3, 5)] == pytest.approx(list(corrected))
    assert [rejected[i] for i in (0, 2, 3, 5)] == list(reject)
    assert math.isnan(adjusted[1]) and math.isnan(adjusted[4]) and not rejected[1]


trial_samples = st.dictionaries(
    st.integers(0, 20), st.lists(grid_values, min_size=1, max_size=5).map(
        lambda v: dict(enumerate(v))), min_size=1, max_size=6)


@few
@given(trial_samples, st.sampled_from([0.01, 0.05, 0.2]))
def test_compare_to_best_tests_every_other_trial_against_the_best_mean(samples, alpha):
    rows = compare_to_best(samples, "maximize", alpha)
    means = {t: np.mean(list(v.values())) for t, v in samples.items()}
    best = min(t for t in means if means[t] == max(means.values()))  # ties: the lowest number
    assert [r.trial for r in rows] == sorted(t for t in samples if t != best)
    assert all(r.best == best for r in rows)
    tested = [r for r in rows if r.difference.untestable is None]
    assert [r.p_holm for r in tested] == pytest.approx(holm_by_hand([r.difference.p
                                                                     for r in tested]))
    for r in rows:
        d = r.difference
        expected = difference(samples[r.trial], samples[best])
        assert d == expected or (math.isnan(d.diff) and expected.untestable == d.untestable)
        if d.untestable is not None:
            assert r.verdict == f"not testable ({d.untestable})" and math.isnan(r.p_holm)
        elif r.p_holm <= alpha:
            assert r.verdict == f"{'worse' if d.diff < 0 else 'better'} (p_holm={r.p_holm:.2g})"
        else:
            assert r.verdict == f"not distinguishable (p_holm={r.p_holm:.2g})"


@few
@given(trial_samples)
def test_minimizing_the_negated_values_gives_the_same_verdicts(samples):
    negated = {t: {s: -v for s, v in values.items()} for t, values in samples.items()}
    up, down = compare_to_best(samples, "maximize"), compare_to_best(negated, "minimize")
    assert [(r.trial, r.best, r.verdict) for r in up] == [(r.trial, r.best, r.verdict)
                                                          for r in down]


def test_verdicts_say_worse_by_the_direction_and_leave_untestable_trials_out_of_holm():
    samples = {
        0: {0: 0.875, 1: 0.8125, 2: 0.75},  # best
        1: {0: 0.50, 1: 0.45, 2: 0.40},     # clearly worse
        2: {0: 0.70},                       # one seed only: paired impossible, Welch n = 1
        3: {0: 0.625, 1: 0.5625, 2: 0.5},   # every seed exactly 0.25 below: zero variance
    }
    rows = {r.trial: r for r in compare_to_best(samples, "maximize")}
    p = stats.ttest_rel([0.50, 0.45, 0.40], [0.875, 0.8125, 0.75]).pvalue
    assert rows[1].p_holm == pytest.approx(p)  # the only testable comparison: Holm over 1
    assert rows[1].verdict == f"worse (p_holm={p:.2g})"
    assert rows[2].verdict == "not testable (fewer than 2 seeds)"
    assert rows[3].verdict == "not testable (zero variance)" and rows[3].difference.diff == -0.25
    losses = {t: {s: 1 - v for s, v in values.items()} for t, values in samples.items()}
    rows = {r.trial: r for r in compare_to_best(losses, "minimize")}
    assert rows[1].best == 0 and rows[1].verdict.startswith("worse")  # larger loss is worse
    assert rows[1].difference.diff > 0


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, math.nan])
def test_alpha_outside_zero_one_is_refused(alpha):
    with pytest.raises(ValueError, match="expected a number between 0 and 1"):
        compare_to_best({0: {0: 0.5}}, "maximize", alpha)
