"""optuna-dashboard for hpo studies: a protocol note and mean ± CI figures, then the server.

What the dashboard shows of an hpo study: trial values (the mean over seeds), named after the
study's objective (Optuna's metric name, instead of "Objective 0"), the user attributes n, mean,
var, std, sem, ci95_low, ci95_high and seeds, the intermediate values (the mean learning curve), a
study note describing the protocol, and per trial a Plotly figure of the mean ± 95 % CI curves of
validation and training, titled with the trial's parameters. The metric name, notes and figures
are written by :func:`annotate` when ``hpo dashboard`` starts.

Example:
    >>> serve("sqlite:///studies/mnist-q6-width.db", port=8080)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Mapping
from typing import Any

import optuna

from hpo._imports import LazyImport
from hpo.errors import HpoError
from hpo.results import Results

# The [dashboard] extra: imported on first use, after _require has checked it is installed.
optuna_dashboard = LazyImport("optuna_dashboard")
go = LazyImport("plotly.graph_objects")


def _require() -> None:
    if any(importlib.util.find_spec(name) is None for name in ("optuna_dashboard", "plotly")):
        raise HpoError("hpo dashboard needs optuna-dashboard and plotly "
                       "(pip install hpo-sweeps[dashboard])")


def protocol_note(settings: dict, study: str, direction: str) -> str:
    """Markdown describing how every trial of the study was run."""
    data, model, train = settings.get("data", {}), settings.get("model", {}), settings.get(
        "train", {})
    protocol = settings.get("protocol", {})
    repeats, seed = protocol.get("repeats", "?"), protocol.get("seed", 0)
    seeds = (f"{seed}–{seed + repeats - 1}" if isinstance(repeats, int) else "?")
    limits = ", ".join(f"{k} = {data[k]}" for k in ("limit_train", "limit_test") if data.get(k))
    model_keys = ", ".join(f"{k} = {v}" for k, v in model.items() if k != "builder")
    space = settings.get("search.space") or {}
    if isinstance(space, str):  # define-by-run: the function names the parameters
        space = {"suggested by": space}
    several = settings.get("study.objectives")
    value = (f"The trial's value is the mean over its COMPLETE runs (a failed seed is left out) "
             f"of `{settings.get('study.objective')}` ({settings.get('study.reduce')} epoch per "
             f"seed, {direction}); its user attributes hold n, mean, var, std, sem and the "
             "Student-t 95 % CI over the same runs; the intermediate values are the mean "
             "learning curve.")
    if several:
        value = ("The trial's values are the means over its COMPLETE runs (a failed seed is "
                 "left out) of " + ", ".join(f"`{o['metric']}` ({o['direction']})"
                                           for o in several)
                 + "; its user attribute `objectives` holds each one's n, mean, var, std, sem "
                 "and Student-t 95 % CI over the same runs.")
    return "\n".join([
        f"# {study}: an hpo study",
        "",
        f"Each trial trains its configuration **{repeats} times**, with seeds {seeds} (the same "
        f"seeds in every trial). {value}",
        "",
        f"- **Dataset**: `{data.get('dataset')}`, validation = {data.get('validation')}"
        + (f", {limits}" if limits else ""),
        f"- **Model**: `{model.get('builder')}`" + (f" ({model_keys})" if model_keys else ""),
        f"- **Training**: {train.get('epochs')} epochs, batch {train.get('batch_size')}, "
        f"{train.get('optimizer')} (learning rate {train.get('learning_rate')}), loss "
        f"{train.get('loss')}, metrics {', '.join(train.get('metrics', []))}"
        + (f", early stopping {train['early_stopping']}" if train.get("early_stopping") else ""),
        "- **Search space**: " + (", ".join(f"{k} = {v}" for k, v in space.items()) or "none"),
        "",
        "Every metric of every epoch of every seed is in the same database (tables `hpo_runs`, "
        "`hpo_epochs`; views `hpo_trial_summary`, `hpo_epoch_curve`).",
    ])


def shown_params(params: Mapping[str, Any]) -> str:
    """A trial's parameters for a title: ``width=32, lr=0.003162`` (floats to 4 digits)."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items())


def annotate(results: Results, study: str) -> int:
    """Name the study's value after its objective (Optuna's metric name, shown by the dashboard
    instead of "Objective 0"), write the protocol note and one mean ± CI figure per trial, titled
    with the trial's parameters; return the figure count."""
    _require()
    name = results.name(study)
    loaded = optuna.load_study(study_name=name, storage=results.store.optuna)
    settings = results.sweep_settings(name)
    if not settings:
        return 0  # not an hpo study: leave it as Optuna made it
    objective = settings.get("study.objective", "val_accuracy")
    objectives = results.objectives(name)
    with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna 3.2 to 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        loaded.set_metric_names([metric for metric, _ in objectives])
    optuna_dashboard.save_note(loaded, protocol_note(settings, name, ", ".join(
        direction for _, direction in objectives)))
    params = {t.number: t.params for t in loaded.get_trials(deepcopy=False)}
    base = objective.removeprefix("val_").removeprefix("test_")
    epochs = results.epochs(name)
    recorded = set(epochs["metric"])
    curves = {key: results.curves(name, key) for key in (f"val_{base}", base) if key in recorded}
    colors = {f"val_{base}": "31,119,180", base: "255,127,14"}
    figures = 0
    for trial in sorted(epochs["trial"].unique()):
        figure = go.Figure()
        for key, all_trials in curves.items():
            color = colors[key]
            curve = all_trials[all_trials["trial"] == trial]
            x = curve["epoch"].tolist()
            figure.add_trace(go.Scatter(
                x=x + x[::-1], y=curve["ci95_high"].tolist() + curve["ci95_low"].tolist()[::-1],
                fill="toself", fillcolor=f"rgba({color},0.2)", line={"width": 0}, mode="lines",
                name=f"{key}: 95 % CI", hoverinfo="skip"))
            figure.add_trace(go.Scatter(x=x, y=curve["mean"].tolist(), mode="lines+markers",
                                        line={"color": f"rgb({color})"}, name=f"{key}: mean"))
        shown = shown_params(params.get(int(trial), {}))
        figure.update_layout(title=f"trial {trial}" + (f" ({shown})" if shown else "")
                             + ": mean ± 95 % CI over seeds",
                             xaxis_title="epoch", yaxis_title=base)
        optuna_dashboard.save_plotly_graph_object(loaded, figure,
                                                  graph_object_id=f"hpo-trial-{trial}")
        figures += 1
    return figures


def serve(storage: str, study: str | None = None, host: str = "127.0.0.1",
          port: int = 8080) -> None:
    """Annotate ``study`` (without it, every study) of ``storage`` and run optuna-dashboard on
    ``storage``: the dashboard lists every study of the database either way. Its trial pages
    list the kept models of ``study`` (or of the database's only study): optuna-dashboard
    serves one artifact store, and each study has its own."""
    _require()
    with Results(storage) as results:
        names = [results.name(study)] if study else results.study_names()
        for name in names:
            annotate(results, name)
        artifacts = None
        if len(names) == 1:
            artifacts = results.artifact_store(names[0])
    print(f"optuna-dashboard on http://{host}:{port}/dashboard (Ctrl-C stops it)", flush=True)
    optuna_dashboard.run_server(storage, host=host, port=port, artifact_store=artifacts)
