"""The repeat protocol's arithmetic: reduce a run's history, aggregate runs across seeds.

Pure functions over plain numbers, so that the statistics are easy to check against numpy/scipy.

Example:
    >>> reduce_history([0.1, 0.5, 0.4], "best", "maximize")
    0.5
    >>> s = summarize([0.90, 0.92, 0.94])
    >>> s.n, round(s.mean, 2), round(s.std, 2)
    (3, 0.92, 0.02)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def reduce_history(values: Sequence[float], reduce: str, direction: str) -> float:
    """One number per run: the ``last`` epoch's value, or the ``best`` epoch's by ``direction``."""
    if not values:
        raise ValueError("a run with no epochs has no value")
    if reduce == "last":
        return float(values[-1])
    return float(max(values) if direction == "maximize" else min(values))


@dataclass(frozen=True)
class Summary:
    """Mean across seeds with its spread; var uses ddof = 1 and the CI Student's t.

    With one value the spread is undefined and given as None.
    """

    n: int
    mean: float
    var: float | None
    std: float | None
    sem: float | None
    ci95_low: float | None
    ci95_high: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """n, mean, var, std, sem and the 95 % Student-t CI of ``values``."""
    x = np.asarray(values, dtype="float64")
    if x.size == 0:
        raise ValueError("no values to summarize")
    mean = float(x.mean())
    if x.size < 2:
        return Summary(1, mean, None, None, None, None, None)
    sem = float(stats.sem(x, ddof=1))
    if sem == 0.0:
        low, high = mean, mean
    else:
        low, high = stats.t.interval(0.95, x.size - 1, loc=mean, scale=sem)
    return Summary(
        int(x.size), mean, float(x.var(ddof=1)), float(x.std(ddof=1)), sem, float(low), float(high)
    )


def mean_curve(histories: Sequence[Sequence[float]]) -> list[float]:
    """Per-epoch mean over the runs that reached that epoch (runs may stop early)."""
    length = max((len(h) for h in histories), default=0)
    curve = []
    for epoch in range(length):
        values = [h[epoch] for h in histories if len(h) > epoch and math.isfinite(h[epoch])]
        curve.append(float(np.mean(values)) if values else math.nan)
    return curve


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which the run with ``seed`` visits the ``n`` training examples in ``epoch``.

    Example:
        >>> epoch_order(0, 0, 5).tolist() == epoch_order(0, 0, 5).tolist()
        True
        >>> sorted(epoch_order(3, 1, 5).tolist())
        [0, 1, 2, 3, 4]
    """
    return np.random.default_rng([seed, epoch]).permutation(n)


def compare(a: dict[int, float], b: dict[int, float]) -> dict[str, float | int | None]:
    """Is configuration A better than B? Per-seed values (seed → value) of each.

    Welch's t-test on the two samples; because every trial runs the same seeds, also the paired
    t-test on the seeds both have. Effect sizes: Cohen's d (pooled std) and the paired d_z (mean
    difference ÷ std of the differences). CIs: each mean's and the paired mean difference's.

    Example:
        >>> r = compare({0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.88, 1: 0.91, 2: 0.89})
        >>> r["paired_n"], round(r["mean_difference"], 4), r["paired_p"] < 0.05
        (3, 0.0167, True)
    """
    x, y = np.array(list(a.values()), "float64"), np.array(list(b.values()), "float64")
    sa, sb = summarize(x), summarize(y)
    welch = stats.ttest_ind(x, y, equal_var=False)
    pooled = math.sqrt(((x.size - 1) * x.var(ddof=1) + (y.size - 1) * y.var(ddof=1))
                       / (x.size + y.size - 2)) if x.size + y.size > 2 else math.nan
    common = sorted(set(a) & set(b))
    diffs = np.array([a[s] - b[s] for s in common], "float64")
    result: dict[str, float | int | None] = {
        "n_a": sa.n, "mean_a": sa.mean, "std_a": sa.std, "ci95_low_a": sa.ci95_low,
        "ci95_high_a": sa.ci95_high,
        "n_b": sb.n, "mean_b": sb.mean, "std_b": sb.std, "ci95_low_b": sb.ci95_low,
        "ci95_high_b": sb.ci95_high,
        "difference": sa.mean - sb.mean,
        "welch_t": float(welch.statistic), "welch_p": float(welch.pvalue),
        "cohens_d": (sa.mean - sb.mean) / pooled if pooled else math.nan,
        "paired_n": len(common),
    }
    if len(common) >= 2:
        paired = stats.ttest_rel([a[s] for s in common], [b[s] for s in common])
        d = summarize(diffs)
        result.update({
            "mean_difference": d.mean, "paired_t": float(paired.statistic),
            "paired_p": float(paired.pvalue),
            "cohens_dz": d.mean / d.std if d.std else math.nan,
            "difference_ci95_low": d.ci95_low, "difference_ci95_high": d.ci95_high,
        })
    return result
