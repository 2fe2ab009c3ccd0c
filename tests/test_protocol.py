import math

import numpy as np
import pytest
from scipy import stats

from hpo.protocol import epoch_order, mean_curve, reduce_history, summarize


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
