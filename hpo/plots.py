"""The figures of a study (matplotlib), each readable without the code: titles, labels, legends.

- ``curves``: one trial's every seed per epoch, train and validation, with the mean ± 95 % CI band
  (the assignment's "10 runs on one plot");
- ``param``: the reduced metric against one parameter, train and validation, with 95 % CI bars
  (the assignment's "average accuracy vs number of neurons");
- ``compare``: several trials' mean validation curves with their bands;
- ``seeds``: every trial's per-seed values beside its mean and CI.

``param`` and ``seeds`` draw the COMPLETE trials, and their means and CIs are over each trial's
COMPLETE runs only (:meth:`hpo.Results.seed_table`): the sample of the trial's own statistics and
of ``hpo compare``. ``seeds`` also marks (×) the values of the runs left out (FAIL). ``curves`` and
``compare`` draw learning curves: every run that recorded an epoch counts there, so a pruned
trial's partial seeds can be looked at (:meth:`hpo.Results.curves`).

Example:
    >>> from hpo import Results
    >>> fig = plot(Results("sqlite:///studies/x.db"), "x", "curves")  # doctest: +SKIP
    >>> fig.savefig("curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from hpo.errors import QueryError  # noqa: E402
from hpo.results import Results  # noqa: E402
from hpo.stats import summarize  # noqa: E402

KINDS = ("curves", "param", "compare", "seeds")


def plot(results: Results, study: str, kind: str, *, trial: int | None = None,
         trials: Sequence[int] | None = None, param: str | None = None,
         metric: str | None = None, error: bool = False) -> Figure:
    """Draw ``kind`` for ``study``; ``metric`` defaults to the study's objective (its train-side
    twin is drawn beside it where there is one); ``error`` plots 1 − accuracy."""
    if kind not in KINDS:
        raise QueryError.about("kind", kind, f"expected one of {', '.join(KINDS)}")
    name = results.name(study)
    metric = metric or results.sweep_settings(name).get("study.objective", "val_accuracy")
    if kind == "curves":
        return _curves(results, name, trial, metric, error)
    if kind == "param":
        return _param(results, name, param, metric, error)
    if kind == "compare":
        return _compare(results, name, trials, metric, error)
    return _seeds(results, name, metric, error)


def best_trial(results: Results, study: str) -> int:
    """The number of the study's best COMPLETE trial (by its value and the study's direction)."""
    trials = results.trials(study)
    complete = trials[trials["state"] == "COMPLETE"]
    if complete.empty:
        raise QueryError(f"study {study!r}: no complete trial to plot")
    maximize = results._study(study).direction.name == "MAXIMIZE"
    return int(complete.loc[complete["value"].idxmax() if maximize
                            else complete["value"].idxmin(), "number"])


def _finish(fig: Figure, ax, title: str, xlabel: str, ylabel: str) -> Figure:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _twins(metric: str) -> list[tuple[str, str]]:
    """(history key, label) pairs: the validation metric and its training twin."""
    base = metric.removeprefix("val_").removeprefix("test_")
    if metric.startswith("test_"):
        return [(metric, "test")]
    return [(f"val_{base}", "validation"), (base, "train")]


def _label(metric: str, error: bool) -> str:
    base = metric.removeprefix("val_").removeprefix("test_")
    return f"error (1 − {base})" if error else base


def _values(values, error: bool):
    return 1.0 - values if error else values


def _curves(results: Results, study: str, trial: int | None, metric: str, error: bool) -> Figure:
    trial = best_trial(results, study) if trial is None else trial
    epochs = results.epochs(study)
    epochs = epochs[epochs["trial"] == trial]
    if epochs.empty:
        raise QueryError.about("trial", trial, f"study {study!r} has no epochs for it")
    fig, ax = plt.subplots(figsize=(8, 5))
    for (key, label), color in zip(_twins(metric), ("tab:blue", "tab:orange"), strict=False):
        values = epochs[epochs["metric"] == key]
        if values.empty:
            continue
        seeds = sorted(values["seed"].unique())
        for i, seed in enumerate(seeds):
            run = values[values["seed"] == seed].sort_values("epoch")
            ax.plot(run["epoch"], _values(run["value"], error), color=color, alpha=0.35,
                    linewidth=0.8, label=f"{label}, each of {len(seeds)} seeds" if i == 0 else None)
        curve = results.curves(study, key)
        curve = curve[curve["trial"] == trial]
        mean = _values(curve["mean"], error)
        low, high = _values(curve["ci95_low"], error), _values(curve["ci95_high"], error)
        ax.plot(curve["epoch"], mean, color=color, linewidth=2.2, label=f"{label}, mean")
        ax.fill_between(curve["epoch"], low, high, color=color, alpha=0.2,
                        label=f"{label}, 95 % CI of the mean")
    params = results.trials(study).set_index("number").loc[trial]
    shown = ", ".join(f"{k}={v}" for k, v in params.items()
                      if k not in _STATS and k != "state") or "the only configuration"
    return _finish(fig, ax, f"{study}: trial {trial} ({shown})", "epoch",
                   _label(metric, error))


_STATS = {"n", "mean", "var", "std", "sem", "ci95_low", "ci95_high", "value"}


def _param(results: Results, study: str, param: str | None, metric: str,
           error: bool) -> Figure:
    trials = results.trials(study)
    params = [c for c in trials.columns if c not in _STATS and c not in ("number", "state")]
    if param is None:
        if len(params) != 1:
            raise QueryError.about("param", None, f"study {study!r} has parameters "
                                   f"{', '.join(params) or 'none'}; name the one to plot")
        param = params[0]
    if param not in params:
        raise QueryError.about("param", param, f"not a parameter of {study!r}; expected one of "
                               + ", ".join(params))
    complete = trials[trials["state"] == "COMPLETE"].sort_values(param)
    fig, ax = plt.subplots(figsize=(8, 5))
    numeric = np.issubdtype(complete[param].dtype, np.number)
    for (key, label), color in zip(_twins(metric), ("tab:blue", "tab:orange"), strict=False):
        table = results.seed_table(study, key)
        xs, means, lows, highs = [], [], [], []
        for row in complete.itertuples(index=False):
            seeds = results.seed_values(study, row.number, key, table)
            s = summarize(list(seeds.values()))
            xs.append(getattr(row, param))
            means.append(s.mean)
            lows.append(s.mean if s.ci95_low is None else s.ci95_low)
            highs.append(s.mean if s.ci95_high is None else s.ci95_high)
        means, lows, highs = (_values(np.array(v), error) for v in (means, lows, highs))
        lower, upper = np.minimum(lows, highs), np.maximum(lows, highs)
        positions = xs if numeric else np.arange(len(xs))
        ax.errorbar(positions, means, yerr=[means - lower, upper - means], marker="o",
                    capsize=4, color=color,
                    label=f"{label}: mean ± 95 % CI over COMPLETE seeds")
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 8:
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs, [str(x) for x in xs])
    elif not numeric:
        ax.set_xticks(np.arange(len(xs)), [str(x) for x in xs])
    return _finish(fig, ax, f"{study}: {_label(metric, error)} against {param}", param,
                   f"{_label(metric, error)} ({_reduce(results, study)} epoch per seed)")


def _reduce(results: Results, study: str) -> str:
    return results.sweep_settings(study).get("study.reduce", "last")


def _compare(results: Results, study: str, trials: Sequence[int] | None, metric: str,
             error: bool) -> Figure:
    key = _twins(metric)[0][0]
    if key.startswith("test_"):
        key = "val_" + key.removeprefix("test_")
    curves = results.curves(study, key)
    trials = list(trials) if trials else sorted(curves["trial"].unique())
    fig, ax = plt.subplots(figsize=(8, 5))
    table = results.trials(study).set_index("number")
    for trial in trials:
        curve = curves[curves["trial"] == trial]
        if curve.empty:
            raise QueryError.about("trials", None,
                                   f"trial {trial} of {study!r} has no {key!r} curve")
        params = ", ".join(f"{k}={v}" for k, v in table.loc[trial].items()
                           if k not in _STATS and k != "state")
        line, = ax.plot(curve["epoch"], _values(curve["mean"], error), linewidth=2,
                        label=f"trial {trial}" + (f" ({params})" if params else ""))
        ax.fill_between(curve["epoch"], _values(curve["ci95_low"], error),
                        _values(curve["ci95_high"], error), color=line.get_color(), alpha=0.15)
    return _finish(fig, ax, f"{study}: mean {key} per epoch, 95 % CI bands", "epoch",
                   _label(key, error))


def _seeds(results: Results, study: str, metric: str, error: bool) -> Figure:
    trials = results.trials(study)
    complete = trials[trials["state"] == "COMPLETE"]
    every_run = results.seed_table(study, metric, states=None)
    table = every_run[every_run["state"] == "COMPLETE"]
    left_out = every_run[every_run["state"] != "COMPLETE"]
    fig, ax = plt.subplots(figsize=(8, 5))
    marked = False
    for position, row in enumerate(complete.itertuples(index=False)):
        seeds = results.seed_values(study, row.number, metric, table)
        values = _values(np.array(list(seeds.values())), error)
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(position + np.asarray(jitter), values, s=14, color="tab:gray",
                   label="one COMPLETE seed" if position == 0 else None)
        s = summarize(list(values))
        spread = 0.0 if s.ci95_low is None else s.mean - min(s.ci95_low, s.ci95_high)
        ax.errorbar([position + 0.3], [s.mean], yerr=[[spread], [spread]], fmt="o",
                    color="tab:red", capsize=4,
                    label="mean ± 95 % CI of the COMPLETE seeds" if position == 0 else None)
        dropped = _values(left_out.loc[left_out["trial"] == row.number, "value"].to_numpy(),
                          error)
        dropped = dropped[np.isfinite(dropped)]  # a diverged run's NaN has no place on the axis
        if dropped.size:
            ax.scatter(np.full(dropped.size, position - 0.3), dropped, s=24, marker="x",
                       color="tab:purple",
                       label=None if marked else "run not COMPLETE (left out)")
            marked = True
    ax.set_xticks(range(len(complete)), [str(n) for n in complete["number"]])
    return _finish(fig, ax, f"{study}: {_label(metric, error)} of every seed, per trial", "trial",
                   f"{_label(metric, error)} ({_reduce(results, study)} epoch per seed)")
