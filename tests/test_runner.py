"""The study runner on real training: records, statistics, resume, refusal, failures."""

from __future__ import annotations

import textwrap

import numpy as np
import optuna
import pytest
from scipy import stats

from hpo import Results, SweepError, parse_sweep, run_sweep

from conftest import SMALL_SWEEP


def test_every_epoch_of_every_seed_is_recorded(small_study):
    sweep, url = small_study
    with Results(url) as r:
        epochs, runs = r.epochs("small"), r.runs("small")
    assert set(epochs["trial"]) == {0, 1}
    per_trial = epochs.groupby("trial").size()
    n_keys = len(sweep.history_keys)
    assert (per_trial == sweep.protocol.repeats * sweep.train.epochs * n_keys).all()
    assert set(epochs["metric"]) == set(sweep.history_keys)
    assert len(runs) == 2 * sweep.protocol.repeats
    assert (runs["state"] == "COMPLETE").all() and (runs["epochs"] == sweep.train.epochs).all()
    assert (runs["wall_s"] > 0).all()


def test_trial_value_is_the_mean_over_seeds_recomputed_from_epochs(small_study):
    sweep, url = small_study
    with Results(url) as r:
        epochs, trials = r.epochs("small"), r.trials("small")
    last = epochs[(epochs["metric"] == "val_accuracy") & (epochs["epoch"] == sweep.train.epochs)]
    for trial in trials.itertuples():
        values = last[last["trial"] == trial.number].sort_values("seed")["value"].to_numpy()
        assert len(values) == sweep.protocol.repeats
        assert trial.value == pytest.approx(values.mean())
        assert trial.mean == pytest.approx(values.mean())
        assert trial.var == pytest.approx(values.var(ddof=1))
        assert trial.std == pytest.approx(values.std(ddof=1))
        assert trial.sem == pytest.approx(stats.sem(values))
        low, high = stats.t.interval(0.95, len(values) - 1, loc=values.mean(),
                                     scale=stats.sem(values))
        assert (trial.ci95_low, trial.ci95_high) == pytest.approx((low, high))
        assert trial.n == 3


def test_intermediate_values_are_the_mean_learning_curve(small_study):
    _, url = small_study
    study = optuna.load_study(study_name="small", storage=url)
    with Results(url) as r:
        epochs = r.epochs("small")
    val = epochs[epochs["metric"] == "val_accuracy"]
    for trial in study.trials:
        curve = val[val["trial"] == trial.number].groupby("epoch")["value"].mean()
        assert trial.intermediate_values == pytest.approx(curve.to_dict())
        assert trial.user_attrs["seeds"] == [0, 1, 2]


def test_widths_are_the_grid_and_wider_is_better_here(small_study):
    _, url = small_study
    with Results(url) as r:
        trials = r.trials("small").set_index("width")
    assert sorted(trials.index) == [4, 16]
    assert trials.loc[16, "value"] > 0.5  # learning happened on 300 examples in 2 epochs


def test_rerunning_a_finished_grid_runs_nothing(small_study):
    sweep, url = small_study
    study = run_sweep(sweep, storage=url)
    assert len(study.trials) == 2


def test_a_study_with_other_settings_is_refused_and_left_unchanged(small_study):
    _, url = small_study
    changed = parse_sweep(SMALL_SWEEP, ["train.epochs=3"])
    with pytest.raises(SweepError, match=r"train.epochs = 3: study 'small' .* was run with 2"):
        run_sweep(changed, storage=url)
    flipped = parse_sweep(SMALL_SWEEP, ["study.direction='minimize'"])
    with pytest.raises(SweepError, match="was created with 'maximize'"):
        run_sweep(flipped, storage=url)
    assert len(optuna.load_study(study_name="small", storage=url).trials) == 2


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, sqlite_url):
    (tmp_path / "fragile.py").write_text(textwrap.dedent("""
        from hpo.models.mlp import build as mlp

        def build(input_shape, n_classes, width, **params):
            if width == 4:
                raise ValueError("width 4 is not supported by this builder")
            return mlp(input_shape, n_classes, width=width, **params)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sweep = parse_sweep(SMALL_SWEEP, ["model.builder='fragile:build'", "protocol.repeats=2",
                                      "train.epochs=1"])
    study = run_sweep(sweep, storage=sqlite_url)
    states = {t.params["width"]: t.state for t in study.trials}
    assert states == {4: optuna.trial.TrialState.FAIL, 16: optuna.trial.TrialState.COMPLETE}
    with Results(sqlite_url) as r:
        runs = r.runs("small")
    failed = runs[runs["state"] == "FAIL"]
    assert len(failed) == 2 and len(runs) == 4
    assert failed["error"].str.contains("ValueError: width 4 is not supported").all()
    assert (failed["epochs"] == 0).all()


def test_results_reject_an_unknown_study(small_study):
    _, url = small_study
    with Results(url) as r, pytest.raises(SweepError, match="study 'nope': not in"):
        r.trials("nope")


def test_studies_table(small_study):
    _, url = small_study
    with Results(url) as r:
        studies = r.studies()
    row = studies.set_index("name").loc["small"]
    assert (row["direction"], row["n_trials"], row["n_runs"]) == ("maximize", 2, 6)


def test_runs_carry_the_final_value_of_each_metric(small_study):
    _, url = small_study
    with Results(url) as r:
        runs, epochs = r.runs("small"), r.epochs("small")
    last = epochs[epochs["epoch"] == 2].pivot_table(index=["trial", "seed"], columns="metric",
                                                     values="value")
    merged = runs.set_index(["trial", "seed"])
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(merged[metric], last[metric].loc[merged.index])
