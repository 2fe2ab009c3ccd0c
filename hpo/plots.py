"""The figures of a study (matplotlib), each readable without the code: titles, labels, legends.

- ``curves``: one trial's every seed per epoch, train and validation, with the mean ± 95 % CI band
  (the assignment's "10 runs on one plot"); the best trial unless one is named;
- ``trials``: the same for every trial, one small panel each, in the order of the parameters;
- ``param``: the reduced metric against a parameter, train and validation, with 95 % CI bars
  (the assignment's "average accuracy vs number of neurons"). With one searched parameter, one
  panel whose COMPLETE trials are joined by a line in the parameter's order. With several, one
  panel per parameter (or only the one named by ``param``) and points without lines: trials at
  one value of a parameter differ in the others, so a line would join unlike configurations. The
  x axis is logarithmic when the search space declares the parameter ``log = true``, and base 2
  for a grid of positive numbers spanning a factor of 8 or more (``width = [2, 4, …, 256]``);
- ``compare``: several trials' mean validation curves with their bands, in the order of their
  parameter values;
- ``seeds``: every COMPLETE trial's per-seed values beside its mean and CI, the trials in the
  order of their parameter values, each labelled with its number and parameters;
- ``pareto`` (several objectives): each COMPLETE trial at its first two objectives' means with
  their 95 % CI bars, the Pareto front (Optuna's, over every objective) marked and joined.

``param`` and ``seeds`` reduce each run as the study reduces its objective, and their means and
CIs are over each trial's COMPLETE runs only (:meth:`hpo.Results.seed_table`): the sample of the
trial's own statistics and of ``hpo compare``. ``seeds`` also marks (×) the values of the runs left
out (FAIL). ``param`` draws PRUNED trials apart, hollow, never joined to the COMPLETE ones: the
mean ± 95 % CI over their seeds of the metric at the last epoch they recorded (the epoch the
pruner stopped them at, :meth:`hpo.Results.curves`), a partial value not comparable with a
COMPLETE trial's. ``curves`` and ``compare`` draw learning curves: every run that recorded an
epoch counts there, so a pruned trial's partial seeds can be looked at
(:meth:`hpo.Results.curves`).

Example:
    >>> from hpo import Results
    >>> fig = plot(Results("sqlite:///studies/x.db"), "x", "curves")  # doctest: +SKIP
    >>> fig.savefig("curves.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, NullLocator  # noqa: E402

from hpo.errors import MetricNotFound, QueryError  # noqa: E402
from hpo.results import Results, param_columns  # noqa: E402
from hpo.stats import summarize  # noqa: E402

KINDS = ("curves", "trials", "param", "compare", "seeds", "pareto")


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
    if kind == "trials":
        return _trials(results, name, metric, error)
    if kind == "param":
        return _param(results, name, param, metric, error)
    if kind == "compare":
        return _compare(results, name, trials, metric, error)
    if kind == "pareto":
        return _pareto(results, name)
    return _seeds(results, name, metric, error)


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


def _fmt(value: Any) -> str:
    """A parameter value for a label: floats to 4 significant digits (0.0031622… → 0.003162)."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _shown(row: Mapping[str, Any], params: Sequence[str]) -> str:
    return ", ".join(f"{p}={_fmt(row[p])}" for p in params)


def _is_number(value: Any) -> bool:
    return (isinstance(value, int | float | np.integer | np.floating)
            and not isinstance(value, bool | np.bool_))


def _curves(results: Results, study: str, trial: int | None, metric: str, error: bool) -> Figure:
    trial = results.best_trial(study) if trial is None else trial
    epochs = results.epochs(study)
    epochs = epochs[epochs["trial"] == trial]
    if epochs.empty:
        raise QueryError.about("trial", trial, f"study {study!r} has no epochs for it")
    fig, ax = plt.subplots(figsize=(8, 5))
    _draw_curves(ax, epochs, _mean_curves(results, study, epochs, metric), trial, error)
    trials = results.trials(study)
    row = trials.set_index("number").loc[trial]
    shown = _shown(row, param_columns(trials)) or "the only configuration"
    return _finish(fig, ax, f"{study}: trial {trial} ({shown})", "epoch",
                   _label(metric, error))


def _trials(results: Results, study: str, metric: str, error: bool) -> Figure:
    """``curves`` of every trial that recorded an epoch, one small panel each, in the order of
    the parameters, on one y scale."""
    epochs = results.epochs(study)
    trials = results.trials(study, sort="param")
    trials = trials[trials["number"].isin(epochs["trial"].unique())]
    if trials.empty:
        raise QueryError(f"study {study!r}: no trial recorded an epoch")
    params = param_columns(trials)
    curves = _mean_curves(results, study, epochs, metric)
    columns = min(4, len(trials))
    rows = -(-len(trials) // columns)
    # At least 8 inches wide: the shared legend below needs it with one or two panels.
    fig, axes = plt.subplots(rows, columns, figsize=(max(8.0, 3.4 * columns + 0.6),
                                                     max(4.5, 2.7 * rows + 0.9)),
                             sharex=True, sharey=True, squeeze=False)
    for ax, row in zip(axes.flat, trials.to_dict("records"), strict=False):
        number = row["number"]
        _draw_curves(ax, epochs[epochs["trial"] == number], curves, number, error)
        state = "" if row["state"] == "COMPLETE" else f", {row['state']}"
        ax.set_title(f"#{number} {_shown(row, params)}{state}".strip(), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(trials):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel(_label(metric, error))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{study}\nevery trial: each seed's curve, and the mean with its 95 % CI",
                 fontsize=11)
    axes.flat[0].xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs (axes shared)
    fig.tight_layout(rect=(0, 0.08 if rows == 1 else 0.05, 1, 1))
    return fig


def _mean_curves(results: Results, study: str, epochs: pd.DataFrame,
                 metric: str) -> dict[str, pd.DataFrame]:
    """History key → :meth:`Results.curves` for the metric and its train twin, where recorded.
    A ``test_*`` metric is measured once, after the last epoch: its validation twin's curve
    is drawn instead."""
    if metric.startswith("test_"):
        metric = "val_" + metric.removeprefix("test_")
    recorded = set(epochs["metric"])
    return {key: results.curves(study, key) for key, _ in _twins(metric) if key in recorded}


def _draw_curves(ax, epochs: pd.DataFrame, curves: Mapping[str, pd.DataFrame], trial: int,
                 error: bool) -> None:
    """One trial's every seed per epoch, and the mean with its 95 % CI band, per history key of
    ``curves`` (validation blue, train orange)."""
    labels = dict(_twins(next(iter(curves), "val_accuracy")))
    for (key, curve), color in zip(curves.items(), ("tab:blue", "tab:orange"), strict=False):
        label = labels.get(key, key)
        values = epochs[epochs["metric"] == key]
        seeds = sorted(values["seed"].unique())
        for i, seed in enumerate(seeds):
            run = values[values["seed"] == seed].sort_values("epoch")
            ax.plot(run["epoch"], _values(run["value"], error), color=color, alpha=0.35,
                    linewidth=0.8, marker="." if len(run) == 1 else None,
                    label=f"{label}, each of {len(seeds)} seeds" if i == 0 else None)
        curve = curve[curve["trial"] == trial]
        mean = _values(curve["mean"], error)
        low, high = _values(curve["ci95_low"], error), _values(curve["ci95_high"], error)
        ax.plot(curve["epoch"], mean, color=color, linewidth=2.2,
                marker="o" if len(curve) == 1 else None, label=f"{label}, mean")
        ax.fill_between(curve["epoch"], low, high, color=color, alpha=0.2,
                        label=f"{label}, 95 % CI of the mean")


class _Point(NamedTuple):
    """One trial's point on a ``param`` panel: mean and 95 % CI (1 − … when plotting the error;
    ``low`` ≤ ``high``, both the mean where the CI is undefined) and, for a PRUNED trial, the
    last epoch its seeds recorded."""

    mean: float
    low: float
    high: float
    epoch: int | None = None


def _point(mean: float, low: float | None, high: float | None, error: bool,
           epoch: int | None = None) -> _Point:
    ends = [mean if v is None or not np.isfinite(v) else v for v in (low, high)]
    mean, low, high = _values(np.array([mean, *ends], dtype=float), error)
    return _Point(float(mean), float(min(low, high)), float(max(low, high)), epoch)


class _Series(NamedTuple):
    """One metric of a ``param`` figure: its label, colour, and points by trial number."""

    label: str
    color: str
    complete: dict[int, _Point]
    pruned: dict[int, _Point]


def _complete_points(results: Results, study: str, key: str, complete: pd.DataFrame,
                     error: bool) -> dict[int, _Point]:
    """Each COMPLETE trial's mean ± CI of ``key`` over its COMPLETE seeds (the trial's own
    statistics)."""
    table = results.seed_table(study, key)
    points = {}
    for number in complete["number"]:
        s = summarize(list(results.seed_values(study, number, key, table).values()))
        points[int(number)] = _point(s.mean, s.ci95_low, s.ci95_high, error)
    return points


def _pruned_points(results: Results, study: str, key: str, pruned: pd.DataFrame,
                   error: bool) -> dict[int, _Point]:
    """Each PRUNED trial's mean ± CI of ``key`` over its seeds at the last epoch they recorded
    (where the pruner stopped them): a partial value, not the trial's reduced one."""
    if pruned.empty:
        return {}
    curves = results.curves(study, key)
    points = {}
    for number in pruned["number"]:
        curve = curves[curves["trial"] == number]
        if curve.empty:
            continue  # stopped before its seeds recorded a value: nothing to draw
        last = curve.loc[curve["epoch"].idxmax()]
        points[int(number)] = _point(last["mean"], last["ci95_low"], last["ci95_high"], error,
                                     int(last["epoch"]))
    return points


def _param(results: Results, study: str, param: str | None, metric: str,
           error: bool) -> Figure:
    trials = results.trials(study)
    params = param_columns(trials)
    if param is not None and param not in params:
        raise QueryError.about("param", param, f"not a parameter of {study!r}; expected one of "
                               + (", ".join(params) or "none"))
    if not params:
        raise QueryError.about("param", None, f"study {study!r} searched no parameter")
    complete = trials[trials["state"] == "COMPLETE"]
    pruned = trials[trials["state"] == "PRUNED"]
    series: list[_Series] = []
    for i, ((key, label), color) in enumerate(zip(_twins(metric), ("tab:blue", "tab:orange"),
                                                  strict=False)):
        try:
            series.append(_Series(label, color,
                                  _complete_points(results, study, key, complete, error),
                                  _pruned_points(results, study, key, pruned, error)))
        except MetricNotFound:
            if i == 0:
                raise
    if not series[0].complete and not series[0].pruned:
        raise QueryError(f"study {study!r}: no COMPLETE or PRUNED trial with a value to plot")
    space = results.sweep_settings(study).get("search.space") or {}
    if not isinstance(space, dict):  # a define-by-run function's: no declared log ranges
        space = {}
    shown = [param] if param is not None else params
    joined = len(params) == 1
    fig, axes = plt.subplots(1, len(shown), figsize=(max(8.0, 4.5 * len(shown)), 5),
                             squeeze=False, sharey=True)
    for ax, name in zip(axes[0], shown, strict=True):
        _param_panel(ax, trials, name, series, space.get(name), joined)
    ylabel = f"{_label(metric, error)} ({_reduce(results, study)} epoch per seed)"
    what = _label(metric, error)
    if len(shown) == 1 and joined:
        return _finish(fig, axes[0][0], f"{study}: {what} against {shown[0]}", shown[0], ylabel)
    if len(shown) == 1:
        others = [p for p in params if p != shown[0]]
        vary = "varies" if len(others) == 1 else "vary"
        return _finish(fig, axes[0][0], f"{study}: {what} against {shown[0]}\n(a point per "
                       f"trial; {', '.join(others)} {vary})", shown[0], ylabel)
    for ax, name in zip(axes[0], shown, strict=True):
        ax.set_title(f"against {name}")
        ax.set_xlabel(name)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{study}: {what} against each parameter (a point per trial; the other "
                 "parameters vary)")
    fig.tight_layout()
    return fig


def _param_panel(ax, trials: pd.DataFrame, name: str, series: list[_Series], spec: Any,
                 joined: bool) -> None:
    """One panel of ``param``: every series' COMPLETE points (joined by a line when ``joined``)
    and hollow PRUNED points against parameter ``name``, whose search-space ``spec`` (a list of
    choices or a range table) decides the x scale."""
    known = trials[trials[name].notna()].set_index("number")[name]
    drawn = [known[n] for one in series for n in (*one.complete, *one.pruned) if n in known]
    numeric = all(_is_number(v) for v in drawn)
    order = [] if numeric else _ordered(set(drawn))
    position = {v: i for i, v in enumerate(order)}

    def x(number: int) -> float:
        value = known[number]
        return float(value) if numeric else position[value]

    for i, (label, color, done, stopped) in enumerate(series):
        numbers = sorted((n for n in done if n in known), key=x)
        means = np.array([done[n].mean for n in numbers])
        ax.errorbar([x(n) for n in numbers], means,
                    yerr=[means - [done[n].low for n in numbers],
                          [done[n].high for n in numbers] - means],
                    marker="o", capsize=4, color=color, linestyle="-" if joined else "none",
                    label=f"{label}: mean ± 95 % CI over COMPLETE seeds")
        numbers = sorted((n for n in stopped if n in known), key=x)
        if not numbers:
            continue
        means = np.array([stopped[n].mean for n in numbers])
        ax.errorbar([x(n) for n in numbers], means,
                    yerr=[means - [stopped[n].low for n in numbers],
                          [stopped[n].high for n in numbers] - means],
                    marker="o", markerfacecolor="none", capsize=3, color=color,
                    linestyle="none", alpha=0.8,
                    label=f"{label}: PRUNED trial, mean ± 95 % CI of its seeds at its last "
                          "epoch (partial: not comparable)")
        if i == 0:  # the epoch once, beside the first metric's points
            for n in numbers:
                ax.annotate(f"pruned at epoch {stopped[n].epoch}", (x(n), stopped[n].mean),
                            textcoords="offset points", xytext=(5, -10), fontsize=7,
                            color=color)
    _x_scale(ax, sorted(set(drawn)) if numeric else order, numeric, spec)


def _ordered(values: set) -> list:
    try:
        return sorted(values)
    except TypeError:  # choices of mixed types: numbers first, then the rest as text
        return sorted(values, key=lambda v: ((0, float(v), "") if _is_number(v)
                                             else (1, 0.0, str(v))))


def _x_scale(ax, values: list, numeric: bool, spec: Any) -> None:
    """Logarithmic for a range declared ``log = true``; base 2 for a list of positive numbers
    (or a study without stored settings) spanning a factor of 8 or more; else linear. Ticks at
    the values drawn when they are few, on a log axis or for a list of choices."""
    if not numeric:
        ax.set_xticks(range(len(values)), [_fmt(v) for v in values])
        return
    if not values:
        return
    if isinstance(spec, dict) and "choices" in spec:  # a list with a condition (when)
        spec = spec["choices"]
    declared = isinstance(spec, dict) and spec.get("log") is True
    wide_grid = not isinstance(spec, dict) and values[0] > 0 and values[-1] / values[0] >= 8
    if declared or wide_grid:
        integers = all(float(v).is_integer() for v in values)
        ax.set_xscale("log", base=2 if integers else 10)
    if (declared or wide_grid or isinstance(spec, list)) and len(values) <= 12:
        ax.set_xticks(values, [_fmt(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())


def _reduce(results: Results, study: str) -> str:
    return results.sweep_settings(study).get("study.reduce", "last")


def _compare(results: Results, study: str, trials: Sequence[int] | None, metric: str,
             error: bool) -> Figure:
    key = _twins(metric)[0][0]
    if key.startswith("test_"):
        key = "val_" + key.removeprefix("test_")
    curves = results.curves(study, key)
    wanted = list(trials) if trials else sorted(curves["trial"].unique())
    for trial in wanted:
        if not (curves["trial"] == trial).any():
            raise QueryError.about("trials", None,
                                   f"trial {trial} of {study!r} has no {key!r} curve")
    table = results.trials(study, sort="param")
    params = param_columns(table)
    rows = table[table["number"].isin(wanted)]
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in rows.to_dict("records"):
        curve = curves[curves["trial"] == row["number"]]
        about = [_shown(row, params)] if params else []
        if row["state"] != "COMPLETE":
            about.append(row["state"])
        line, = ax.plot(curve["epoch"], _values(curve["mean"], error), linewidth=2,
                        marker="o" if len(curve) == 1 else None,  # one epoch: a point
                        label=f"trial {row['number']}"
                              + (f" ({', '.join(about)})" if about else ""))
        ax.fill_between(curve["epoch"], _values(curve["ci95_low"], error),
                        _values(curve["ci95_high"], error), color=line.get_color(), alpha=0.15)
    return _finish(fig, ax, f"{study}: mean {key} per epoch, 95 % CI bands", "epoch",
                   _label(key, error))


def _seeds(results: Results, study: str, metric: str, error: bool) -> Figure:
    trials = results.trials(study, sort="param")
    params = param_columns(trials)
    complete = trials[trials["state"] == "COMPLETE"]
    every_run = results.seed_table(study, metric, states=None)
    table = every_run[every_run["state"] == "COMPLETE"]
    left_out = every_run[every_run["state"] != "COMPLETE"]
    fig, ax = plt.subplots(figsize=(max(8.0, 0.6 * len(complete)), 5))
    marked = False
    ticks = []
    for position, row in enumerate(complete.to_dict("records")):
        ticks.append("\n".join([f"#{row['number']}", *(f"{p}={_fmt(row[p])}" for p in params)]))
        seeds = results.seed_values(study, row["number"], metric, table)
        values = _values(np.array(list(seeds.values())), error)
        jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.scatter(position + np.asarray(jitter), values, s=14, color="tab:gray",
                   label="one COMPLETE seed" if position == 0 else None)
        s = summarize(list(values))
        spread = 0.0 if s.ci95_low is None else s.mean - min(s.ci95_low, s.ci95_high)
        ax.errorbar([position + 0.3], [s.mean], yerr=[[spread], [spread]], fmt="o",
                    color="tab:red", capsize=4,
                    label="mean ± 95 % CI of the COMPLETE seeds" if position == 0 else None)
        dropped = _values(left_out.loc[left_out["trial"] == row["number"], "value"].to_numpy(),
                          error)
        dropped = dropped[np.isfinite(dropped)]  # a diverged run's NaN has no place on the axis
        if dropped.size:
            ax.scatter(np.full(dropped.size, position - 0.3), dropped, s=24, marker="x",
                       color="tab:purple",
                       label=None if marked else "run not COMPLETE (left out)")
            marked = True
    ax.set_xticks(range(len(complete)), ticks, fontsize=8)
    xlabel = f"trial (#number, {', '.join(params)})" if params else "trial"
    return _finish(fig, ax, f"{study}: {_label(metric, error)} of every seed, per trial", xlabel,
                   f"{_label(metric, error)} ({_reduce(results, study)} epoch per seed)")


def _pareto(results: Results, study: str) -> Figure:
    trials = results.trials(study)
    objectives = results.objectives(study)
    if "pareto" not in trials.columns:
        raise QueryError.about("kind", "pareto", f"study {study!r} has one objective; the "
                               "Pareto front needs several ([study] objectives)")
    (x, x_dir), (y, y_dir) = objectives[:2]
    complete = trials[trials["state"] == "COMPLETE"]
    fig, ax = plt.subplots(figsize=(7, 5))
    for on_front, label, color in ((False, "COMPLETE trial", "tab:gray"),
                                   (True, "Pareto front", "tab:red")):
        part = complete[complete["pareto"] == on_front]
        if part.empty:
            continue
        ax.errorbar(part[f"{x}.mean"], part[f"{y}.mean"], xerr=_ci_bars(part, x),
                    yerr=_ci_bars(part, y), fmt="o", color=color, capsize=3,
                    label=f"{label}: means ± 95 % CI over seeds")
        for row in part.to_dict("records"):
            ax.annotate(f"#{row['number']}", (row[f"{x}.mean"], row[f"{y}.mean"]), fontsize=7,
                        textcoords="offset points", xytext=(4, 4))
    front = complete[complete["pareto"]].sort_values(f"{x}.mean")
    if len(front) > 1:
        ax.plot(front[f"{x}.mean"], front[f"{y}.mean"], color="tab:red", alpha=0.4)
    others = f" (front over all {len(objectives)} objectives)" if len(objectives) > 2 else ""
    return _finish(fig, ax, f"{study}: {x} against {y}{others}", f"{x} ({x_dir})",
                   f"{y} ({y_dir})")


def _ci_bars(part: pd.DataFrame, metric: str) -> np.ndarray:
    """(2, n) distances from each mean to its CI's ends; 0 where there is no CI (one seed)."""
    mean = part[f"{metric}.mean"].to_numpy()
    low = np.nan_to_num(mean - part[f"{metric}.ci95_low"].to_numpy())
    high = np.nan_to_num(part[f"{metric}.ci95_high"].to_numpy() - mean)
    return np.vstack([low, high])
