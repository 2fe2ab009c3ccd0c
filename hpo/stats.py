"""The repeat protocol's arithmetic: reduce a run's history, aggregate runs across seeds, compare
trials.

Pure functions over plain numbers, so that the statistics are easy to check against numpy/scipy.
The sample of every statistic here is exactly the values given: callers choose which runs count
(:class:`hpo.Results` passes a trial's COMPLETE runs only). A NaN value is never dropped: it makes
the statistics that depend on it NaN, so that a diverged seed cannot silently raise a mean.

Example:
    >>> reduce_history([0.1, 0.5, 0.4], "best", "maximize")
    0.5
    >>> s = summarize([0.90, 0.92, 0.94])
    >>> s.n, round(s.mean, 2), round(s.std, 2)
    (3, 0.92, 0.02)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


def reduce_history(values: Sequence[float], reduce: str, direction: str) -> float:
    """One number per run: the ``last`` epoch's value, or the ``best`` epoch's by ``direction``
    among the epochs whose value is not NaN (NaN when every epoch's is).

    Example:
        >>> reduce_history([0.2, float("nan"), 0.1], "best", "minimize")
        0.1
    """
    if not values:
        raise ValueError("a run with no epochs has no value")
    if reduce == "last":
        return float(values[-1])
    known = [float(v) for v in values if not math.isnan(v)]
    if not known:
        return math.nan
    return max(known) if direction == "maximize" else min(known)


@dataclass(frozen=True)
class Summary:
    """Mean across seeds with its spread; var uses ddof = 1 and the CI Student's t.

    With one value the spread is undefined and given as None. With identical values the spread is
    0 and the CI [mean, mean]. A NaN among the values makes the mean and the spread NaN.
    """

    n: int
    mean: float
    var: float | None
    std: float | None
    sem: float | None
    ci95_low: float | None
    ci95_high: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        """The statistics by name (stored as the trial's user attributes)."""
        return asdict(self)


def summarize(values: Sequence[float]) -> Summary:
    """n, mean, var, std, sem and the 95 % Student-t CI of the mean, over all of ``values``.

    n counts every value. var and std use ddof = 1, sem = std / √n (``scipy.stats.sem``) and the
    CI is ``scipy.stats.t.interval(0.95, n − 1, mean, sem)``. One value: no spread (None).
    Identical finite values: mean equal to that value, spread 0, CI [mean, mean]. NaN values are
    not excluded: with one, the mean, var, std, sem and CI are NaN (numpy's arithmetic).

    Example:
        >>> summarize([0.5]).std is None
        True
        >>> s = summarize([0.1, 0.1, 0.1])
        >>> (s.mean, s.std, s.ci95_low, s.ci95_high)
        (0.1, 0.0, 0.1, 0.1)
        >>> s = summarize([0.9, float("nan"), 0.8])
        >>> (s.n, math.isnan(s.mean), math.isnan(s.std), math.isnan(s.ci95_low))
        (3, True, True, True)
    """
    x = np.asarray(values, dtype="float64")
    if x.size == 0:
        raise ValueError("no values to summarize")
    if x.size < 2:
        return Summary(1, float(x[0]), None, None, None, None, None)
    if np.isfinite(x).all() and (x == x[0]).all():
        # Exactly: numpy's mean of n copies of 0.1 is 0.10000000000000002, its var not 0.
        v = float(x[0])
        return Summary(int(x.size), v, 0.0, 0.0, 0.0, v, v)
    mean = float(x.mean())
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


def _var(x: np.ndarray) -> float:
    """The sample variance (ddof 1); 0 for one value, which adds no spread to a pooled std."""
    return float(x.var(ddof=1)) if x.size > 1 else 0.0


def compare(a: dict[int, float], b: dict[int, float]) -> dict[str, float | int | None]:
    """Is configuration A better than B? Per-seed values (seed → value) of each.

    Welch's t-test on the two samples; because every trial runs the same seeds, also the paired
    t-test on the seeds both have. Effect sizes: Cohen's d (pooled std) and the paired d_z (mean
    difference ÷ std of the differences). CIs: each mean's and the paired mean difference's.
    Every value given is used (the caller chooses the runs): a NaN makes what it enters NaN.

    Example:
        >>> r = compare({0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.88, 1: 0.91, 2: 0.89})
        >>> r["paired_n"], round(r["mean_difference"], 4), r["paired_p"] < 0.05
        (3, 0.0167, True)
    """
    x, y = np.array(list(a.values()), "float64"), np.array(list(b.values()), "float64")
    sa, sb = summarize(x), summarize(y)
    welch = stats.ttest_ind(x, y, equal_var=False)
    pooled = math.sqrt(((x.size - 1) * _var(x) + (y.size - 1) * _var(y))
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


ALPHA = 0.05  # the default significance level of :func:`compare_to_best`


@dataclass(frozen=True)
class Difference:
    """Trial A minus trial B, on per-seed values, with the t-test that compared them.

    ``test`` is ``"paired"`` (Student's paired t-test on the seeds both have) or ``"welch"``
    (Welch's t-test on all of each one's values). ``n`` is the number of seeds A contributed and
    ``n_other`` B's (paired: both are the common seeds). ``diff`` is the mean of A's values minus
    the mean of B's (paired: the mean of the per-seed differences A − B, which is the same number
    up to rounding). ``ci95_low``/``ci95_high`` are the 95 % confidence interval of that
    difference (paired t with n − 1 df; Welch with the Welch–Satterthwaite df) and ``p`` the
    two-sided p-value. When no test is possible, ``p`` and the CI are NaN and ``untestable`` says
    why: ``"NaN value"``, ``"fewer than 2 seeds"`` or ``"zero variance"``; otherwise it is None.
    """

    test: str
    n: int
    n_other: int
    diff: float
    ci95_low: float
    ci95_high: float
    p: float
    untestable: str | None


def difference(a: Mapping[int, float], b: Mapping[int, float]) -> Difference:
    """Compare A with B (seed → value each): the paired t-test by seed when they share at least two
    seeds, else Welch's t-test.

    Paired: ``scipy.stats.ttest_rel`` over the common seeds only (a seed only one of them has is
    left out), its ``confidence_interval(0.95)`` for the mean difference. Welch:
    ``scipy.stats.ttest_ind(equal_var=False)`` over all values of each, its
    ``confidence_interval(0.95)`` (Welch–Satterthwaite df). Not testable (p and CI NaN, see
    :class:`Difference`): a NaN or infinite value among those used; fewer than 2 values on a side
    (Welch); no spread, i.e. identical per-seed differences (paired) or two samples each of
    identical values (Welch), where the t statistic is 0/0 or ±∞.

    Example:
        >>> d = difference({0: 0.90, 1: 0.92, 2: 0.91}, {0: 0.88, 1: 0.91, 2: 0.89})
        >>> d.test, d.n, round(d.diff, 4), round(d.p, 3), d.ci95_low < d.diff < d.ci95_high
        ('paired', 3, 0.0167, 0.038, True)
        >>> d = difference({0: 0.90, 1: 0.92}, {2: 0.88, 3: 0.89, 4: 0.87})
        >>> d.test, d.n, d.n_other, round(d.diff, 3)
        ('welch', 2, 3, 0.03)
        >>> difference({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8}).untestable
        'zero variance'
        >>> difference({0: 0.9}, {0: 0.8}).untestable
        'fewer than 2 seeds'
    """
    common = sorted(set(a) & set(b))
    if len(common) >= 2:
        test = "paired"
        x = np.array([a[s] for s in common], "float64")
        y = np.array([b[s] for s in common], "float64")
        diff = float(np.mean(x - y))
    else:
        test = "welch"
        x = np.array([a[s] for s in sorted(a)], "float64")
        y = np.array([b[s] for s in sorted(b)], "float64")
        diff = float(x.mean() - y.mean()) if x.size and y.size else math.nan
    untestable = _untestable(test, x, y)
    if untestable is not None:
        return Difference(test, x.size, y.size, diff, math.nan, math.nan, math.nan, untestable)
    with warnings.catch_warnings():
        # Nearly identical values: scipy warns of precision loss and still answers; so do we.
        warnings.simplefilter("ignore", RuntimeWarning)
        if test == "paired":
            result = stats.ttest_rel(x, y)
        else:
            result = stats.ttest_ind(x, y, equal_var=False)
        low, high = result.confidence_interval(0.95)
    return Difference(test, x.size, y.size, diff, float(low), float(high), float(result.pvalue),
                      None)


def _untestable(test: str, x: np.ndarray, y: np.ndarray) -> str | None:
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return "NaN value"
    if min(x.size, y.size) < 2:
        return "fewer than 2 seeds"
    d = x - y if test == "paired" else None
    if d is not None and (d == d[0]).all():
        return "zero variance"
    if d is None and (x == x[0]).all() and (y == y[0]).all():
        return "zero variance"
    return None


def holm(pvalues: Sequence[float], alpha: float = ALPHA) -> tuple[list[float], list[bool]]:
    """Holm's step-down correction (``statsmodels.stats.multitest.multipletests``,
    ``method="holm"``) of the finite p-values among ``pvalues``: (adjusted p-values, rejected at
    ``alpha``). A NaN p-value (a comparison that could not be tested) is not a hypothesis: it is
    not counted in the correction, stays NaN and is not rejected. Rejected means p_holm ≤ alpha.

    Example:
        >>> p_holm, rejected = holm([0.01, float("nan"), 0.04, 0.03])
        >>> [round(p, 2) for p in p_holm], rejected
        ([0.03, nan, 0.06, 0.06], [True, False, False, False])
    """
    from statsmodels.stats.multitest import multipletests

    check_alpha(alpha)
    p = np.asarray(pvalues, "float64")
    adjusted = np.full(p.shape, math.nan)
    rejected = np.zeros(p.shape, bool)
    tested = ~np.isnan(p)
    if tested.any():
        reject, corrected, _, _ = multipletests(p[tested], alpha=alpha, method="holm")
        adjusted[tested], rejected[tested] = corrected, reject
    return [float(v) for v in adjusted], [bool(v) for v in rejected]


def check_alpha(alpha: float) -> None:
    """Refuse a significance level outside (0, 1).

    Example:
        >>> check_alpha(1.5)
        Traceback (most recent call last):
        ...
        ValueError: alpha = 1.5: expected a number between 0 and 1 (exclusive)
    """
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha = {alpha!r}: expected a number between 0 and 1 (exclusive)")


@dataclass(frozen=True)
class VersusBest:
    """One trial's comparison with the best trial: its :class:`Difference` (trial − best), the
    Holm-adjusted p-value and the verdict (see :func:`compare_to_best`)."""

    trial: int
    best: int
    difference: Difference
    p_holm: float
    verdict: str


def best_trial(samples: Mapping[int, Mapping[int, float]], direction: str) -> int | None:
    """The trial whose values have the best mean (:func:`summarize`, values in seed order: the
    number the runner stores as the trial's value), by ``direction``; the lowest trial number
    among equal means; None when no trial has a finite mean.

    Example:
        >>> best_trial({0: {0: 0.8, 1: 0.9}, 1: {0: 0.9, 1: 0.95}, 2: {0: float("nan")}},
        ...            "maximize")
        1
    """
    means = {trial: summarize([values[s] for s in sorted(values)]).mean
             for trial, values in samples.items() if values}
    finite = sorted((t, m) for t, m in means.items() if math.isfinite(m))
    if not finite:
        return None
    pick = max if direction == "maximize" else min
    best_mean = pick(m for _, m in finite)
    return next(t for t, m in finite if m == best_mean)


def compare_to_best(samples: Mapping[int, Mapping[int, float]], direction: str,
                    alpha: float = ALPHA) -> list[VersusBest]:
    """Test every trial against the best one: ``samples`` maps trial → (seed → value).

    The best is :func:`best_trial`. Each other trial is compared by :func:`difference` (trial −
    best: paired t-test by seed on their common seeds when there are at least 2, else Welch's);
    the p-values of the comparisons that could be tested are corrected together by Holm's method
    (:func:`holm`) at ``alpha``. Verdicts: ``"worse (p_holm=…)"`` when rejected and the difference
    goes the wrong way for ``direction`` (maximize: below the best; minimize: above),
    ``"better (p_holm=…)"`` when rejected the other way (possible only when the paired seeds are
    not all of the best's), ``"not distinguishable (p_holm=…)"`` when not rejected: no evidence
    of a difference at ``alpha``, which is not evidence of equality; ``"not testable (why)"``
    otherwise. Rows in trial order; none when no trial has a finite mean.

    Example:
        >>> rows = compare_to_best({0: {0: 0.90, 1: 0.91, 2: 0.92},
        ...                         1: {0: 0.80, 1: 0.82, 2: 0.81},
        ...                         2: {0: 0.91, 1: 0.90, 2: 0.93}}, "maximize")
        >>> [(r.trial, r.best, r.verdict) for r in rows]
        [(0, 2, 'not distinguishable (p_holm=0.67)'), (1, 2, 'worse (p_holm=0.027)')]
    """
    check_alpha(alpha)
    best = best_trial(samples, direction)
    if best is None:
        return []
    others = sorted(t for t in samples if t != best and samples[t])
    diffs = [difference(samples[t], samples[best]) for t in others]
    p_holm, rejected = holm([d.p for d in diffs], alpha)
    return [VersusBest(t, best, d, p, verdict(d, p, r, direction))
            for t, d, p, r in zip(others, diffs, p_holm, rejected, strict=True)]


def verdict(d: Difference, p_holm: float, rejected: bool, direction: str) -> str:
    """The words for one comparison with the best (see :func:`compare_to_best`).

    Example:
        >>> d = Difference("paired", 3, 3, -0.02, -0.03, -0.01, 0.004, None)
        >>> verdict(d, 0.008, True, "maximize"), verdict(d, 0.008, True, "minimize")
        ('worse (p_holm=0.008)', 'better (p_holm=0.008)')
    """
    if d.untestable is not None:
        return f"not testable ({d.untestable})"
    if not rejected:
        return f"not distinguishable (p_holm={p_holm:.2g})"
    below = d.diff < 0
    worse = below if direction == "maximize" else not below
    return f"{'worse' if worse else 'better'} (p_holm={p_holm:.2g})"
