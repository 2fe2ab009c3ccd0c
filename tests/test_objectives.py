"""Several objectives (``[study] objectives``): Optuna's multi-objective study, each objective's
statistics over the seeds, the Pareto front in Results, ``hpo show``, ``hpo plot`` and the report.
"""

from __future__ import annotations

import optuna
import pytest

from hpo import Results, parse_sweep, run_sweep
from hpo.cli import main
from hpo.errors import QueryError

from conftest import SMALL_SWEEP

TWO = SMALL_SWEEP.replace(
    'direction = "maximize"\nobjective = "val_accuracy"\n',
    'objectives = [{ metric = "val_accuracy", direction = "maximize" },\n'
    '              { metric = "params", direction = "minimize" }]\n')


def front_of(points: dict[int, tuple[float, float]], directions: list[str]) -> set[int]:
    """The non-dominated trials, by brute force: as good in both, better in one."""
    signs = [1 if d == "maximize" else -1 for d in directions]

    def dominates(a, b):
        better = [s * (x - y) for s, x, y in zip(signs, a, b, strict=True)]
        return all(d >= 0 for d in better) and any(d > 0 for d in better)

    return {n for n, p in points.items()
            if not any(dominates(q, p) for m, q in points.items() if m != n)}


@pytest.fixture(scope="module")
def two_objectives(tmp_path_factory, mnist_data):
    url = f"sqlite:///{tmp_path_factory.mktemp('objectives') / 'two.db'}"
    # A learning rate too small to learn in one epoch: its trials are dominated (as costly,
    # less accurate), so the front is a strict subset.
    sweep = parse_sweep(TWO, ["search.space={width=[4, 16], learning_rate=[0.01, 0.00001]}",
                              "protocol.repeats=2", "train.epochs=1"])
    return sweep, url, run_sweep(sweep, storage=url)


def test_each_trial_has_one_mean_per_objective_and_their_statistics(two_objectives):
    sweep, url, study = two_objectives
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    with Results(url) as r:
        trials = r.trials("small")
        runs = r.runs("small")
        seeds = r.seed_table("small", "params")
    assert len(study.trials) == 4
    for t in study.trials:
        width = t.params["width"]
        params = 784 * width + width + width * 10 + 10  # the mlp's trainable weights
        accuracy = runs.loc[runs["trial"] == t.number, "val_accuracy"]
        assert t.values == [pytest.approx(accuracy.mean()), params]
        stats = {o["metric"]: o for o in t.user_attrs["objectives"]}
        assert stats["params"]["n"] == 2 and stats["params"]["std"] == 0.0
        assert stats["val_accuracy"]["std"] == pytest.approx(accuracy.std())
        assert t.user_attrs["mean"] == stats["val_accuracy"]["mean"]  # the first's, as before
        row = trials[trials["number"] == t.number].iloc[0]
        assert row["params.mean"] == params and row["value"] == t.values[0]
        table = seeds[seeds["trial"] == t.number]
        assert list(table["value"]) == [params, params]


def test_the_pareto_front_is_the_one_computed_from_the_trials_table(two_objectives):
    _, url, study = two_objectives
    with Results(url) as r:
        trials, front = r.trials("small"), r.pareto("small")
        models = r.models("small")
    points = {row["number"]: (row["val_accuracy.mean"], row["params.mean"])
              for row in trials.to_dict("records")}
    expected = front_of(points, ["maximize", "minimize"])
    assert 0 < len(expected) < len(points)  # else a wrong front could not be told apart
    assert set(front["number"]) == expected == {t.number for t in study.best_trials}
    assert set(trials.loc[trials["pareto"], "number"]) == expected
    assert list(front["val_accuracy.mean"]) == sorted(front["val_accuracy.mean"], reverse=True)
    # keep_models = "best" keeps the models of the whole front, every seed.
    assert sorted(zip(models["trial"], models["seed"], strict=True)) == sorted(
        (n, s) for n in expected for s in (0, 1))


def test_show_plot_and_report_mark_the_front(two_objectives, tmp_path, capsys):
    _, url, _ = two_objectives
    with Results(url) as r:
        front = set(r.pareto("small")["number"])
    assert main(["show", "small", "--storage", url]) == 0
    out = capsys.readouterr().out
    marked = {int(line.split("│")[1]) for line in out.splitlines()
              if line.startswith("│") and "◆" in line}
    assert marked == front and "params mean ± std" in out and "Pareto front" in out
    assert main(["plot", "small", "--kind", "pareto", "--storage", url,
                 "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["report", "small", "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    assert "◆" in (tmp_path / "r.html").read_text()


def test_a_single_objective_study_has_no_front(small_study):
    _, url = small_study
    with Results(url) as r:
        assert "pareto" not in r.trials("small").columns
        with pytest.raises(QueryError, match="one objective"):
            r.pareto("small")


def test_epoch_seconds_is_each_runs_wall_time_per_epoch_with_nsga2(tmp_path, mnist_data):
    text = SMALL_SWEEP.replace(
        'direction = "maximize"\nobjective = "val_accuracy"\n',
        'objectives = [{ metric = "val_loss", direction = "minimize" },\n'
        '              { metric = "epoch_seconds", direction = "minimize" }]\n')
    sweep = parse_sweep(text, ["search.sampler='nsgaii'", "search.n_trials=2",
                               "protocol.repeats=2", "train.keep_models='none'"])
    url = f"sqlite:///{tmp_path / 'time.db'}"
    study = run_sweep(sweep, storage=url)
    assert isinstance(study.sampler, optuna.samplers.NSGAIISampler)
    with Results(url) as r:
        runs = r.runs("small")
        seconds = r.seed_table("small", "epoch_seconds")  # the sample hpo compare tests
        versus = r.compare_all("small", "epoch_seconds", direction="minimize")
    for t in study.trials:
        mine = runs[runs["trial"] == t.number]
        assert t.values[1] == pytest.approx((mine["wall_s"] / mine["epochs"]).mean())
        assert t.values[0] == pytest.approx(mine["val_loss"].mean())
        assert seconds.loc[seconds["trial"] == t.number, "value"].mean() == pytest.approx(
            t.values[1])
    assert versus.attrs["best"] == min(study.trials, key=lambda t: t.values[1]).number


def test_each_objective_is_compared_in_its_own_direction_and_listed(two_objectives):
    _, url, study = two_objectives
    with Results(url) as r:
        versus = r.compare_all("small", "params")  # params minimize: the smallest model wins
        studies = r.studies()
    smallest = min(study.trials, key=lambda t: (t.values[1], -t.values[0]))
    assert versus.attrs["direction"] == "minimize" and versus.attrs["reduce"] == "run"
    assert study.trials[versus.attrs["best"]].values[1] == smallest.values[1]
    assert studies.loc[studies["name"] == "small", "direction"].item() == "maximize, minimize"


def test_a_files_own_objective_may_stay_beside_objectives_when_it_is_the_first():
    sweep = parse_sweep(SMALL_SWEEP, [  # SMALL_SWEEP has objective val_accuracy, maximize
        "study.objectives=[{metric='val_accuracy', direction='maximize'}, "
        "{metric='params', direction='minimize'}]"])
    assert [o.metric for o in sweep.study.objectives] == ["val_accuracy", "params"]
