"""The worker loop on real training: a finished grid runs nothing, two workers racing for the
last grid point, a worker frozen before its tell; and Results read back from the runner's study.

The study's opening and identity are tested in test_study.py, the objective and its sink in
test_objective.py."""

from __future__ import annotations

import io

import numpy as np
import optuna
import pytest

from hpo import Results, StudyNotFound, parse_sweep, run_sweep
from hpo.objective import Objective
from hpo.progress import LineProgress, NullProgress
from hpo.runner import _run_trials, load_data
from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.study import open_study

from conftest import SMALL_SWEEP, assert_same_study, study_contents


def test_rerunning_a_finished_grid_runs_nothing(small_study):
    sweep, url = small_study
    study = run_sweep(sweep, storage=url)
    assert len(study.trials) == 2


def test_results_reject_an_unknown_study(small_study):
    _, url = small_study
    with Results(url) as r, pytest.raises(StudyNotFound, match="study 'nope': not in"):
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
                                                                         request, mnist_data):
    """Two workers both see one grid point left and both ask: the second gets a point the
    first holds, and is marked skipped instead of training it again."""
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    sweep = parse_sweep(SMALL_SWEEP, ["search.space.width=[4]", "protocol.repeats=1",
                                      "train.epochs=1", "data.limit_train=64"])
    store = Store.open(url, create=True)
    study = open_study(sweep, store)
    first, second = study.ask(), study.ask()  # the race: both asked before either trained
    leases, progress = Leases(store.engine), NullProgress()
    progress.sweep_started(sweep, 1, 0)
    objective = Objective(sweep, load_data(sweep), Recorder(store.engine), store.optuna,
                          progress)
    for trial in (second, first):
        _run_trials(study, [(trial, leases.take(trial._trial_id))], objective, leases, progress)
    store.dispose()
    with Results(url) as r:
        trials, runs = r.trials("small"), r.runs("small")
    assert trials["number"].tolist() == [0] and trials["state"].tolist() == ["COMPLETE"]
    assert runs["trial"].tolist() == [0]  # the duplicate trained nothing
    held, skipped = optuna.load_study(study_name="small", storage=url).trials
    assert held.system_attrs["grid_id"] == skipped.system_attrs["grid_id"]  # one point, twice
    assert skipped.state == optuna.trial.TrialState.FAIL
    assert skipped.user_attrs["hpo.skipped"] == "grid point of trial 0"


def test_a_worker_frozen_between_its_last_check_and_its_tell_drops_the_trial(sqlite_url,
                                                                            mnist_data):
    """The one window fencing cannot close: worker A passed its check, then froze; B claimed the
    trial and told it. A's tell is skipped, A says it was taken over, and B's result stands."""
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
    objective = Objective(sweep, load_data(sweep), Recorder(store.engine), store.optuna,
                          progress)
    _run_trials(study, [(trial, a.take(trial._trial_id))], objective, a, progress)
    store.dispose()
    assert "trial #0 was taken over by worker-b; dropping its in-flight runs" in shown.getvalue()
    finished = optuna.load_study(study_name="small", storage=sqlite_url).trials[0]
    assert finished.state == optuna.trial.TrialState.COMPLETE and finished.value == 0.5


def test_trials_packed_together_record_what_they_record_one_by_one(small_study, tmp_path):
    """The small grid's two widths trained in one pack (``pack_trials``, the default: the
    ``small_study`` fixture) and one trial after the other: the same runs, statistics and
    intermediate values, trial by trial."""
    sweep, packed_url = small_study
    url = f"sqlite:///{tmp_path}/alone.db"
    shown = io.StringIO()
    alone = parse_sweep(SMALL_SWEEP, ["protocol.pack_trials=false"])
    run_sweep(alone, storage=url, progress=LineProgress(shown, every_s=1e9))
    assert_same_study(study_contents(packed_url), study_contents(url))
    lines = shown.getvalue().splitlines()  # one by one: trial 0's runs end before trial 1 starts
    assert lines[1].startswith("trial 1/2 (#0)") and lines[2].startswith("  trial 1/2 (#0)")


def test_trials_asked_together_all_start_before_their_runs(tmp_path, mnist_data):
    shown = io.StringIO()
    sweep = parse_sweep(SMALL_SWEEP, ["protocol.repeats=2", "train.epochs=1",
                                      "data.limit_train=64", "train.keep_models='none'"])
    run_sweep(sweep, storage=f"sqlite:///{tmp_path}/t.db",
              progress=LineProgress(shown, every_s=1e9))
    lines = shown.getvalue().splitlines()
    assert lines[1].startswith("trial 1/2 (#0)") and lines[2].startswith("trial 2/2 (#1)")
    with Results(f"sqlite:///{tmp_path}/t.db") as r:  # keep_models = "none": nothing kept
        assert r.models("small").empty and not (tmp_path / "small").exists()
