"""A trial's objective and its sink: what is recorded per run and epoch, what the pruner is
shown, what the trial's value, attributes and intermediate values are.

The first tests read real sweeps; the sink's parts and the objective's reuse of finished runs are
then tested on a real SQLite study with made-up numbers (no training).
"""

from __future__ import annotations

import io
import math
import textwrap
import warnings

import optuna
import pytest
import sqlalchemy as sa
from scipy import stats

from hpo import Results, parse_sweep, run_sweep
from hpo.errors import LeaseLost, RunError
from hpo.objective import EpochPruning, Objective, RunRecording, TrialSink
from hpo.progress import LineProgress
from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.store.schema import EpochMetric, Run
from hpo.study import open_study

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
def diverging(tmp_path, monkeypatch, mnist_data):
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


# --- The sink's parts and the objective on a real study, with made-up numbers --------------

def held_trial(store: Store, pruner: optuna.pruners.BasePruner | None = None):
    """A new trial of a new study, and this worker's claim on it."""
    study = optuna.create_study(storage=store.optuna, direction="maximize", pruner=pruner)
    trial = study.ask()
    return study, trial, Leases(store.engine).take(trial._trial_id)


def reported(store: Store, trial: optuna.Trial) -> dict[int, float]:
    return store.optuna.get_trial(trial._trial_id).intermediate_values


def recorded_runs(store: Store) -> dict[int, tuple]:
    """seed -> (state, error, epochs recorded) of every run in the database."""
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(Run.run_id, Run.seed, Run.state, Run.error)).all()
        epochs = dict(conn.execute(
            sa.select(EpochMetric.run_id, sa.func.count(sa.distinct(EpochMetric.epoch)))
            .group_by(EpochMetric.run_id)).all())
    return {r.seed: (r.state, r.error, epochs.get(r.run_id, 0)) for r in runs}


def test_the_pruning_part_reports_each_epoch_once_as_the_mean_of_its_finite_values(store):
    _, trial, claim = held_trial(store)
    pruning = EpochPruning(trial, store.optuna, "val_accuracy",
                           RunRecording(Recorder(store.engine), claim).hold)
    pruning.run_epoch(0, 1, {"loss": 1.0, "val_accuracy": 0.25})
    pruning.run_epoch(1, 1, {"loss": 1.0, "val_accuracy": 0.75})
    pruning.run_epoch(2, 1, {"loss": math.nan, "val_accuracy": math.nan})  # a diverged seed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna warns when a step is reported twice
        pruning.epoch_ended(1)
        pruning.run_epoch(3, 1, {"val_accuracy": 0.0})  # a later chunk of seeds
        pruning.epoch_ended(1)
        pruning.run_epoch(3, 2, {"loss": 0.5})  # no objective value: nothing to report
        pruning.epoch_ended(2)
    assert reported(store, trial) == {1: 0.5}
    assert not pruning.stopping


def test_a_resumed_trial_does_not_report_the_epochs_it_reported_before(store):
    study, before, claim = held_trial(store)
    before.report(0.9, 1)  # by the worker that was killed
    resumed = optuna.Trial(study, before._trial_id)
    pruning = EpochPruning(resumed, store.optuna, "val_accuracy",
                           RunRecording(Recorder(store.engine), claim).hold)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch, value in [(1, 0.1), (2, 0.2)]:
            pruning.run_epoch(0, epoch, {"val_accuracy": value})
            pruning.epoch_ended(epoch)
    assert reported(store, resumed) == {1: 0.9, 2: 0.2}


def test_without_a_pruner_nothing_is_reported_while_seeds_train(store):
    _, trial, claim = held_trial(store)
    pruning = EpochPruning(trial, store.optuna, None,
                           RunRecording(Recorder(store.engine), claim).hold)
    pruning.run_epoch(0, 1, {"val_accuracy": 0.5})
    pruning.epoch_ended(1)
    assert reported(store, trial) == {}


def test_the_sink_records_each_run_stops_when_pruned_and_shows_each_seeds_own_value(store):
    sweep = parse_sweep(SMALL_SWEEP)
    _, trial, claim = held_trial(store, optuna.pruners.ThresholdPruner(lower=0.5))
    shown = io.StringIO()
    display = LineProgress(shown, every_s=math.inf)
    display.sweep_started(sweep, 1, 0)
    display.trial_started(trial.number, {"width": 4}, epochs=2)
    recording = RunRecording(Recorder(store.engine), claim)
    sink = TrialSink(recording, EpochPruning(trial, store.optuna, "val_accuracy",
                                             recording.hold), display)
    for seed in (0, 1, 2):
        sink.run_started(seed)
    for seed, value in [(0, 0.6), (1, 0.8), (2, 0.7)]:
        sink.run_epoch(seed, 1, {"loss": 1.0, "val_accuracy": value})
    sink.epoch_ended(1)
    assert not sink.stopping
    sink.run_finished(2, None)  # stopped early, before the pruner's verdict
    sink.run_epoch(0, 2, {"loss": 1.0, "val_accuracy": 0.2})
    sink.run_epoch(1, 2, {"loss": math.nan, "val_accuracy": math.nan})
    sink.epoch_ended(2)
    assert sink.stopping and sink.pruning.pruned_at == 2
    sink.run_finished(0, None)
    sink.run_finished(1, "NonFiniteLoss: loss became nan in epoch 2")
    assert recorded_runs(store) == {
        0: ("PRUNED", None, 2),
        1: ("FAIL", "NonFiniteLoss: loss became nan in epoch 2", 2),
        2: ("COMPLETE", None, 1),
    }
    assert sink.errors == {1: "NonFiniteLoss: loss became nan in epoch 2"}
    assert reported(store, trial) == pytest.approx({1: 0.7, 2: 0.2})
    lines = shown.getvalue()
    assert "seed=2 done (1/3 seeds): val_accuracy=0.7000" in lines
    assert "seed=0 done (2/3 seeds): val_accuracy=0.2000" in lines
    assert "seed=1 done (3/3 seeds): FAILED: NonFiniteLoss: loss became nan in epoch 2" in lines


def test_a_worker_whose_trial_was_taken_over_writes_nothing_more(store):
    study, trial, claim = held_trial(store)
    recording = RunRecording(Recorder(store.engine), claim)
    pruning = EpochPruning(trial, store.optuna, "val_accuracy", recording.hold)
    recording.run_started(0)
    recording.run_epoch(0, 1, {"val_accuracy": 0.5})
    other = Leases(store.engine, owner="worker-b", stale_after=-1)
    assert [t.number for t in other.stale(study)] == [0]
    assert other.claim(trial._trial_id) is not None
    with pytest.raises(LeaseLost):
        recording.run_epoch(0, 2, {"val_accuracy": 0.6})
    with pytest.raises(LeaseLost):
        recording.run_finished(0, "COMPLETE", None)
    pruning.run_epoch(0, 2, {"val_accuracy": 0.6})
    with pytest.raises(LeaseLost):  # checked before Optuna's write, which hpo cannot fence
        pruning.epoch_ended(2)
    assert recorded_runs(store) == {0: ("RUNNING", None, 1)}
    assert reported(store, trial) == {}


def test_a_sink_whose_trial_was_taken_over_keeps_the_loss_and_stops_its_runs(store):
    """Trials trained together: one trial's lost lease must not stop the others' runs, so its
    sink keeps the LeaseLost (the objective raises it at finish) and says it is stopping."""
    sweep = parse_sweep(SMALL_SWEEP)
    study, trial, claim = held_trial(store)
    display = LineProgress(io.StringIO(), every_s=math.inf)
    display.sweep_started(sweep, 1, 0)
    display.trial_started(trial.number, {"width": 4}, epochs=2)
    recording = RunRecording(Recorder(store.engine), claim)
    sink = TrialSink(recording, EpochPruning(trial, store.optuna, "val_accuracy",
                                             recording.hold), display, trial.number)
    sink.run_started(0)
    sink.run_epoch(0, 1, {"loss": 1.0, "val_accuracy": 0.5})
    sink.epoch_ended(1)
    assert not sink.stopping and sink.lost is None
    other = Leases(store.engine, owner="worker-b", stale_after=-1)
    assert [t.number for t in other.stale(study)] == [0]
    assert other.claim(trial._trial_id) is not None
    sink.run_epoch(0, 2, {"loss": 1.0, "val_accuracy": 0.6})  # refused, kept, not raised
    assert isinstance(sink.lost, LeaseLost) and sink.stopping
    sink.epoch_ended(2)
    sink.run_finished(0, None)
    assert recorded_runs(store) == {0: ("RUNNING", None, 1)}  # nothing after the takeover
    assert reported(store, trial) == {1: 0.5}  # epoch 2 was not reported


def test_a_dropped_ctrl_c_stops_the_trial_at_its_next_epoch(store):
    """Python drops a KeyboardInterrupt raised inside a ``__del__``; the sink raises it again
    when the epoch ends (hpo.interrupts)."""
    import os
    import signal

    from hpo import interrupts

    class CollectedDuringCtrlC:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)

    _, trial, claim = held_trial(store)
    recording = RunRecording(Recorder(store.engine), claim)
    sink = TrialSink(recording, EpochPruning(trial, store.optuna, None, recording.hold),
                     LineProgress(io.StringIO()), trial.number)
    with interrupts.delivered(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sink.epoch_ended(1)  # no Ctrl-C: nothing happens
        collected = CollectedDuringCtrlC()
        del collected  # "Exception ignored in ...": the KeyboardInterrupt is dropped
        with pytest.raises(KeyboardInterrupt):
            sink.epoch_ended(2)


def test_a_report_on_a_trial_another_worker_finished_is_a_lost_lease(store):
    study, trial, claim = held_trial(store)
    pruning = EpochPruning(trial, store.optuna, "val_accuracy",
                           RunRecording(Recorder(store.engine), claim).hold)
    optuna.load_study(study_name=study.study_name, storage=store.optuna).tell(trial.number, 0.5)
    pruning.run_epoch(0, 1, {"val_accuracy": 0.6})
    with pytest.raises(LeaseLost):
        pruning.epoch_ended(1)
    assert not pruning.stopping and pruning.reported == set()


def finished_before(store: Store, sweep, runs: dict[int, tuple[str, str | None, list[float]]]):
    """A trial of ``sweep``'s study whose runs (seed -> state, error, val_accuracy per epoch)
    were recorded by a worker that was killed; the new holder's claim and a display."""
    study = open_study(sweep, store)
    trial = study.ask()
    claim = Leases(store.engine).take(trial._trial_id)
    recorder = Recorder(store.engine)
    for seed, (state, error, curve) in runs.items():
        run_id = recorder.start_run(claim, seed)
        for epoch, value in enumerate(curve, start=1):
            recorder.record_epoch(claim, run_id, epoch, {"loss": 1.0, "val_accuracy": value})
        recorder.finish_run(claim, run_id, state, error)
    shown = io.StringIO()
    display = LineProgress(shown, every_s=math.inf)
    display.sweep_started(sweep, 1, 0)
    return optuna.Trial(study, trial._trial_id), claim, recorder, display, shown


def test_a_resumed_trial_whose_seeds_all_finished_trains_nothing_and_is_their_mean(store):
    sweep = parse_sweep(SMALL_SWEEP, ["search.space.width=[4]"])
    curves = {0: [0.5, 0.6], 1: [0.7, 0.8], 2: [math.nan, 1.0]}
    trial, claim, recorder, display, shown = finished_before(
        store, sweep, {seed: ("COMPLETE", None, curve) for seed, curve in curves.items()})
    before = recorded_runs(store)
    # No data: a trial that had to train a seed would fail here.
    objective = Objective(sweep, None, recorder, store.optuna, display)
    value = objective(trial, claim)
    assert value == pytest.approx(0.8)
    assert recorded_runs(store) == before
    finished = store.optuna.get_trial(trial._trial_id)
    assert finished.user_attrs["seeds"] == [0, 1, 2] and finished.user_attrs["n"] == 3
    assert finished.user_attrs["mean"] == pytest.approx(0.8)
    assert "failed_seeds" not in finished.user_attrs
    # The mean curve over the seeds' finite values, written through the given storage.
    assert finished.intermediate_values == pytest.approx({1: 0.6, 2: 0.8})
    assert "reusing the finished runs of seeds [0, 1, 2]" in shown.getvalue()
    assert "trial #0: mean 0.8000" in shown.getvalue()


def test_a_resumed_trial_whose_reused_runs_failed_fails_with_the_first_error(store):
    sweep = parse_sweep(SMALL_SWEEP, ["search.space.width=[4]", "protocol.min_repeats=2"])
    trial, claim, recorder, display, _ = finished_before(store, sweep, {
        0: ("COMPLETE", None, [0.5, 0.6]),
        1: ("FAIL", "NonFiniteLoss: loss became nan in epoch 1", [math.nan]),
        2: ("FAIL", None, [0.5]),
    })
    objective = Objective(sweep, None, recorder, store.optuna, display)
    with pytest.raises(RunError, match="trial 0: 1 of 3 runs completed, fewer than "
                                       "protocol.min_repeats = 2; first failure: "
                                       "NonFiniteLoss: loss became nan in epoch 1"):
        objective(trial, claim)
    attrs = store.optuna.get_trial(trial._trial_id).user_attrs
    assert attrs["failed_seeds"] == [1, 2]
    assert attrs["error"] == "NonFiniteLoss: loss became nan in epoch 1"
