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


def test_widths_are_the_grid_and_reach_the_model(small_study):
    _, url = small_study
    with Results(url) as r:
        trials = r.trials("small").set_index("width")
    assert sorted(trials.index) == [4, 16]
    # Same seeds, same data: only the width differs, and 16 hidden units learn more than 4 in
    # every seed (a width that never reached the model would give equal values).
    with Results(url) as r:
        table = r.seed_table("small")
    per_seed = table.pivot(index="seed", columns="trial", values="value")
    wide, narrow = trials.loc[16, "number"], trials.loc[4, "number"]
    assert (per_seed[wide] > per_seed[narrow]).all()


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


# A user builder whose width-4 model outputs NaN for some seeds: hpo seeds numpy before each
# run's build, so the draw is a function of the run's seed (0.549, 0.417, 0.436 for seeds 0-2).
DIVERGING = textwrap.dedent("""
    import keras
    import numpy as np
    from hpo.models.mlp import build as mlp

    def build(input_shape, n_classes, width, nan_below=1.0, **params):
        model = mlp(input_shape, n_classes, width=width, **params)
        if width == 4 and np.random.random() < nan_below:
            nan = keras.layers.Lambda(lambda x: x * float("nan"))(model.output)
            return keras.Model(model.input, nan)
        return model
""")


@pytest.fixture
def diverging(tmp_path, monkeypatch):
    (tmp_path / "diverging.py").write_text(DIVERGING)
    monkeypatch.syspath_prepend(str(tmp_path))
    return ["model.builder='diverging:build'", "train.epochs=1"]


@pytest.mark.parametrize("pack", [False, True])
def test_a_diverged_run_is_recorded_failed_and_the_sweep_goes_on(diverging, sqlite_url, pack):
    sweep = parse_sweep(SMALL_SWEEP, [*diverging, f"protocol.pack={str(pack).lower()}"])
    study = run_sweep(sweep, storage=sqlite_url)
    states = {t.params["width"]: t.state for t in study.trials}
    assert states == {4: optuna.trial.TrialState.FAIL, 16: optuna.trial.TrialState.COMPLETE}
    failed_trial = next(t for t in study.trials if t.params["width"] == 4)
    assert failed_trial.user_attrs["failed_seeds"] == [0, 1, 2]
    assert failed_trial.user_attrs["error"].startswith("NonFiniteLoss")
    with Results(sqlite_url) as r:
        runs = r.runs("small")
    failed = runs[runs["state"] == "FAIL"]
    assert len(failed) == 3 and len(runs) == 6
    assert failed["error"].str.contains("NonFiniteLoss: loss became nan in epoch 1").all()
    assert (failed["epochs"] == 1).all()  # the diverged epoch is recorded


def test_min_repeats_lets_a_trial_stand_on_its_completed_seeds(diverging, sqlite_url):
    strict = parse_sweep(SMALL_SWEEP, [*diverging, "model.nan_below=0.5",
                                       "search.space.width=[4]"])
    study = run_sweep(strict, storage=sqlite_url)
    narrow = next(t for t in study.trials if t.params["width"] == 4)
    assert narrow.state == optuna.trial.TrialState.FAIL  # default: every seed must complete
    assert narrow.user_attrs["failed_seeds"] == [1, 2]
    lenient = parse_sweep(SMALL_SWEEP, [*diverging, "model.nan_below=0.5",
                                        "search.space.width=[4]", "protocol.min_repeats=1",
                                        "study.name='lenient'"])
    study = run_sweep(lenient, storage=sqlite_url)
    narrow = next(t for t in study.trials if t.params["width"] == 4)
    assert narrow.state == optuna.trial.TrialState.COMPLETE
    assert narrow.user_attrs["n"] == 1 and narrow.user_attrs["failed_seeds"] == [1, 2]
    with Results(sqlite_url) as r:
        runs = r.runs("lenient")
    seed0 = runs[(runs["trial"] == narrow.number) & (runs["seed"] == 0)]
    assert narrow.value == pytest.approx(seed0["val_accuracy"].item())


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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_worker_that_asks_past_the_end_of_the_grid_skips_the_duplicate(backend, sqlite_url,
                                                                         request):
    """Two workers both see one grid point left and both ask: the second gets a point the
    first holds, and is marked skipped instead of training it again."""
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    from hpo.progress import NullProgress
    from hpo.runner import Objective, _run_trial, load_data, open_study
    from hpo.store import Store
    from hpo.store.lease import Leases
    from hpo.store.recorder import Recorder

    sweep = parse_sweep(SMALL_SWEEP, ["search.space.width=[4]", "protocol.repeats=1",
                                      "train.epochs=1", "data.limit_train=64"])
    store = Store.open(url, create=True)
    study = open_study(sweep, store)
    first, second = study.ask(), study.ask()  # the race: both asked before either trained
    leases, progress = Leases(store.engine), NullProgress()
    progress.sweep_started(sweep, 1, 0)
    objective = Objective(sweep, load_data(sweep), Recorder(store.engine), progress)
    for trial in (second, first):
        _run_trial(study, trial, leases.take(trial._trial_id), objective, leases, progress)
    store.dispose()
    with Results(url) as r:
        trials, runs = r.trials("small"), r.runs("small")
    assert trials["number"].tolist() == [0] and trials["state"].tolist() == ["COMPLETE"]
    assert runs["trial"].tolist() == [0]  # the duplicate trained nothing
    held, skipped = optuna.load_study(study_name="small", storage=url).trials
    assert held.system_attrs["grid_id"] == skipped.system_attrs["grid_id"]  # one point, twice
    assert skipped.state == optuna.trial.TrialState.FAIL
    assert skipped.user_attrs["hpo.skipped"] == "grid point of trial 0"


def test_a_worker_frozen_between_its_last_check_and_its_tell_drops_the_trial(sqlite_url):
    """The one window fencing cannot close: worker A passed its check, then froze; B claimed the
    trial and told it. A's tell is skipped, A says it was taken over, and B's result stands."""
    import io

    from hpo.progress import LineProgress
    from hpo.runner import Objective, _run_trial, load_data, open_study
    from hpo.store import Store
    from hpo.store.lease import Leases
    from hpo.store.recorder import Recorder

    sweep = parse_sweep(SMALL_SWEEP, ["search.space.width=[4]", "protocol.repeats=1",
                                      "train.epochs=1", "data.limit_train=64"])
    store = Store.open(sqlite_url, create=True)
    study = open_study(sweep, store)
    trial = study.ask()
    a = Leases(store.engine, owner="worker-a")
    b = Leases(store.engine, owner="worker-b", stale_after=-1)
    told = study.tell

    def tell_after_a_takeover(*args, **kwargs):
        assert [t.number for t in b.stale(study)] == [0]
        assert b.claim(trial._trial_id) is not None
        optuna.load_study(study_name="small", storage=store.optuna).tell(trial.number, 0.5)
        return told(*args, **kwargs)

    study.tell = tell_after_a_takeover
    shown = io.StringIO()
    progress = LineProgress(stream=shown)
    progress.sweep_started(sweep, 1, 0)
    objective = Objective(sweep, load_data(sweep), Recorder(store.engine), progress)
    _run_trial(study, trial, a.take(trial._trial_id), objective, a, progress)
    store.dispose()
    assert "trial #0 was taken over by worker-b; dropping its in-flight runs" in shown.getvalue()
    finished = optuna.load_study(study_name="small", storage=sqlite_url).trials[0]
    assert finished.state == optuna.trial.TrialState.COMPLETE and finished.value == 0.5
