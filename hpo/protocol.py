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
