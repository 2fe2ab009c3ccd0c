"""The four figures, drawn from a real small study and checked through matplotlib's objects."""

from __future__ import annotations

import optuna
import pytest
from study_edits import copy_study, fail_seed

from hpo import Results
from hpo.plots import plot
from hpo.stats import summarize
from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.study import SWEEP_ATTR


@pytest.fixture(scope="module")
def results(small_study):
    _, url = small_study
    with Results(url) as r:
        yield r


def test_curves_draw_every_seed_and_the_mean_band(results, tmp_path):
    fig = plot(results, "small", "curves")
    ax = fig.axes[0]
    # validation and train: 3 seeds + 1 mean line each, and one CI band each
    assert len(ax.lines) == 2 * (3 + 1) and len(ax.collections) == 2
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    best = results.trials("small").sort_values("value").iloc[-1]
    assert f"trial {best['number']} (width={best['width']})" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "validation, each of 3 seeds" in labels and "train, 95 % CI of the mean" in labels
    error = plot(results, "small", "curves", trial=1, error=True).axes[0]
    assert error.get_ylabel() == "error (1 − accuracy)"
    _check_png(fig, tmp_path / "curves.png")


def test_param_plots_the_metric_against_width_with_ci_bars(results, tmp_path):
    fig = plot(results, "small", "param")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "width" and ax.get_xscale() == "linear"  # 4..16: not log
    bars = ax.containers  # one error-bar series each for validation and train
    assert len(bars) == 2
    for bar in bars:
        assert sorted(bar.lines[0].get_xdata()) == [4, 16]  # one mean per width
    _check_png(fig, tmp_path / "param.png")


def test_compare_draws_one_band_per_trial(results, tmp_path):
    ax = plot(results, "small", "compare", trials=[0, 1]).axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    widths = results.trials("small").set_index("number")["width"].sort_values()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"trial {n} (width={w})" for n, w in widths.items()]


def test_seeds_show_every_seed(results, tmp_path):
    fig = plot(results, "small", "seeds")
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")
                 and c.get_offsets().shape[-1] == 2 and len(c.get_offsets()) == 3)
    assert points == 2 * 3
    _check_png(fig, tmp_path / "seeds.png")


def test_trials_draws_a_panel_per_trial_with_each_seed_and_the_mean(small_study):
    sweep, url = small_study
    with Results(url) as r:
        widths = r.trials("small", sort="param")[["number", "width"]].values.tolist()
        epochs = r.epochs("small")
        fig = plot(r, "small", "trials")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == [f"#{n} width={w}" for n, w in widths]
    repeats = sweep.protocol.repeats
    for ax, (number, _) in zip(panels, widths, strict=True):
        # Per history key (validation, train): one line per seed, then the mean line.
        lines = [line.get_ydata() for line in ax.lines]
        assert len(lines) == 2 * (repeats + 1)
        mine = epochs[(epochs["trial"] == number) & (epochs["metric"] == "val_accuracy")]
        by_seed = [mine[mine["seed"] == s].sort_values("epoch")["value"].tolist()
                   for s in range(repeats)]
        assert [list(y) for y in lines[:repeats]] == by_seed
        mean = mine.groupby("epoch")["value"].mean().tolist()
        assert list(lines[repeats]) == pytest.approx(mean)


def _check_png(fig, path):
    fig.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_seeds_and_param_plots_use_the_complete_seeds_and_mark_the_left_out(small_study,
                                                                            tmp_path):
    _, url = small_study
    copy = copy_study(url, tmp_path)
    with Results(copy) as r:
        trials = r.trials("small")
        worse = int(trials.sort_values("value").iloc[0]["number"])
        fail_seed(copy, "small", worse, 1, diverged=False)  # FAIL, its values kept
        values = r.seed_table("small", states=None)
        seeds_ax = plot(r, "small", "seeds").axes[0]
        param_ax = plot(r, "small", "param").axes[0]
    mine = values[values["trial"] == worse].set_index("seed")["value"]
    complete_mean = mine[[0, 2]].mean()
    assert complete_mean != pytest.approx(mine.mean())  # the failed seed would move the mean
    position = trials.sort_values("width")["number"].tolist().index(worse)  # by width
    means = [c.lines[0].get_ydata()[0] for c in seeds_ax.containers]
    assert means[position] == pytest.approx(complete_mean)
    (marked,) = [c for c in seeds_ax.collections
                 if c.get_label() == "run not COMPLETE (left out)"]
    assert marked.get_offsets()[:, 1].tolist() == pytest.approx([mine[1]])
    width = trials.set_index("number").loc[worse, "width"]
    validation = param_ax.containers[0].lines[0]  # validation first, then train
    at = validation.get_xdata().tolist().index(width)
    assert validation.get_ydata()[at] == pytest.approx(complete_mean)
    assert [t.get_text() for t in param_ax.get_legend().get_texts()] == [
        "validation: mean ± 95 % CI over COMPLETE seeds",
        "train: mean ± 95 % CI over COMPLETE seeds"]


# Studies written without training (real Optuna, real SQLite, runs recorded through hpo's
# Recorder as the runner records them): (params, trial state, seed → val_accuracy per epoch; the
# train-side accuracy is val_accuracy + 0.1). "lr": one log-range parameter spanning less than a
# factor of 8 (the base-2 heuristic alone would keep the axis linear), trials out of lr order,
# trial 2 PRUNED after epoch 1. "two": two parameters.
LOG_RANGE = {"low": 0.01, "high": 0.05, "log": True}
LR = [({"lr": 0.04}, "COMPLETE", {0: [0.5, 0.6], 1: [0.55, 0.7]}),
      ({"lr": 0.01}, "COMPLETE", {0: [0.4, 0.8], 1: [0.45, 0.9]}),
      ({"lr": 0.03}, "PRUNED", {0: [0.2], 1: [0.3]}),
      ({"lr": 0.02}, "COMPLETE", {0: [0.5, 0.75], 1: [0.6, 0.85]})]
TWO = [({"width": 4, "lr": 0.01}, "COMPLETE", {0: [0.5, 0.6], 1: [0.5, 0.7]}),
       ({"width": 16, "lr": 0.01}, "COMPLETE", {0: [0.5, 0.8], 1: [0.5, 0.9]}),
       ({"width": 4, "lr": 0.04}, "COMPLETE", {0: [0.5, 0.5], 1: [0.5, 0.6]}),
       ({"width": 16, "lr": 0.04}, "COMPLETE", {0: [0.5, 0.7], 1: [0.5, 0.75]})]


def write_study(store: Store, name: str, space: dict, trials: list) -> None:
    study = optuna.create_study(study_name=name, storage=store.optuna, direction="maximize")
    study.set_user_attr(SWEEP_ATTR, {"study.objective": "val_accuracy", "study.reduce": "last",
                                     "search.space": space})
    distributions = {
        p: optuna.distributions.CategoricalDistribution(spec) if isinstance(spec, list)
        else optuna.distributions.FloatDistribution(spec["low"], spec["high"], log=spec["log"])
        for p, spec in space.items()}
    leases, recorder = Leases(store.engine), Recorder(store.engine)
    for params, state, seeds in trials:
        study.enqueue_trial(params)
        trial = study.ask(distributions)
        claim = leases.take(trial._trial_id)
        for seed, history in seeds.items():
            run = recorder.start_run(claim, seed)
            for epoch, value in enumerate(history, start=1):
                recorder.record_epoch(claim, run, epoch,
                                      {"val_accuracy": value, "accuracy": value + 0.1})
            recorder.finish_run(claim, run, state, None)
        if state == "PRUNED":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        summary = summarize([history[-1] for history in seeds.values()])
        for key, value in summary.as_dict().items():
            trial.set_user_attr(key, value)
        study.tell(trial, summary.mean)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('plots') / 'written.db'}"
    store = Store.open(url, create=True)
    write_study(store, "lr", {"lr": LOG_RANGE}, LR)
    write_study(store, "two", {"width": [4, 16], "lr": LOG_RANGE}, TWO)
    store.dispose()
    with Results(url) as r:
        yield r


def test_param_uses_a_log_axis_for_a_range_declared_log(written):
    ax = plot(written, "lr", "param").axes[0]
    assert ax.get_xscale() == "log"  # 0.01..0.04: a factor of 4, log only because declared
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.01", "0.02", "0.03", "0.04"]


def test_param_draws_a_pruned_trial_hollow_and_not_on_the_line(written, tmp_path):
    fig = plot(written, "lr", "param")
    ax = fig.axes[0]
    joined = [c.lines[0] for c in ax.containers if len(c.lines[0].get_xdata()) == 3]
    assert [list(line.get_xdata()) for line in joined] == [[0.01, 0.02, 0.04]] * 2
    assert all(line.get_linestyle() == "-" for line in joined)
    pruned = [c.lines[0] for c in ax.containers if list(c.lines[0].get_xdata()) == [0.03]]
    # validation then train: the mean of its 2 seeds at epoch 1, the last they recorded
    assert [line.get_ydata()[0] for line in pruned] == pytest.approx([0.25, 0.35])
    assert all(line.get_linestyle() == "None" and line.get_markerfacecolor() == "none"
               for line in pruned)
    assert [t.get_text() for t in ax.texts] == ["pruned at epoch 1"]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ("validation: PRUNED trial, mean ± 95 % CI of its seeds at its last epoch (partial: "
            "not comparable)") in labels
    _check_png(fig, tmp_path / "param.png")


def test_param_with_two_parameters_draws_a_panel_each_with_points_not_lines(written):
    fig = plot(written, "two", "param")
    assert [ax.get_xlabel() for ax in fig.axes] == ["lr", "width"]
    for ax in fig.axes:
        assert len(ax.containers) == 2  # validation and train, 4 trials each
        assert all(len(c.lines[0].get_xdata()) == 4 for c in ax.containers)
        assert all(line.get_linestyle() == "None" for line in ax.lines)
    assert fig.axes[0].get_xscale() == "log" and fig.axes[1].get_xscale() == "linear"
    (named,) = plot(written, "two", "param", param="width").axes
    assert named.get_xlabel() == "width"
    assert all(line.get_linestyle() == "None" for line in named.lines)


def test_seeds_label_each_trial_with_its_parameters_in_their_order(written):
    ax = plot(written, "lr", "seeds").axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "#1\nlr=0.01", "#3\nlr=0.02", "#0\nlr=0.04"]


def test_compare_orders_its_legend_by_the_parameter(written):
    ax = plot(written, "lr", "compare").axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "trial 1 (lr=0.01)", "trial 3 (lr=0.02)", "trial 2 (lr=0.03, PRUNED)",
        "trial 0 (lr=0.04)"]
