"""The recorder: what it writes for each run, and what a resumed trial reads back.

Real SQLite, real Optuna trials and leases; no training: the numbers are made up.
"""

from __future__ import annotations

import math
import time

import optuna
import pytest
import sqlalchemy as sa

from hpo.errors import LeaseLost
from hpo.store.lease import Leases
from hpo.store.recorder import RecordedRun, Recorder
from hpo.store.schema import Run

NAN, INF = float("nan"), float("inf")


@pytest.fixture
def claims(store):
    """Two trials of one study, both held by this process."""
    study = optuna.create_study(storage=store.optuna)
    leases = Leases(store.engine)
    return [leases.take(study.ask()._trial_id) for _ in range(2)]


def stored_runs(store) -> list:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(Run).order_by(Run.run_id)).all()


def comparable(runs: dict[int, RecordedRun]) -> dict[int, tuple]:
    """NaN as None, so that equal histories compare equal."""
    return {seed: (run.seed, run.state, run.error,
                   {m: [None if math.isnan(v) else v for v in vs] for m, vs in run.history.items()})
            for seed, run in runs.items()}


def test_finished_runs_are_the_trials_complete_and_failed_runs_with_their_histories(store, claims):
    a, b = claims
    rec = Recorder(store.engine)
    # Trial a's seeds trained together, so their epochs interleave: seed 0 completes, seed 1
    # diverges (a non-finite loss is stored as NULL and read back as NaN), seed 2 is pruned,
    # seed 3 is in flight when Ctrl-C comes.
    run = {seed: rec.start_run(a, seed) for seed in range(4)}
    logs = {0: [(0.9, 0.1), (0.5, 0.5), (0.25, 0.75)], 1: [(2.0, 0.1), (INF, 0.1)],
            2: [(1.5, 0.2)], 3: [(1.0, 0.3)]}
    for epoch in (1, 2, 3):
        for seed, history in logs.items():
            if epoch <= len(history):
                loss, accuracy = history[epoch - 1]
                rec.record_epoch(a, run[seed], epoch, {"loss": loss, "accuracy": accuracy})
    rec.finish_run(a, run[0], "COMPLETE")
    rec.finish_run(a, run[1], "FAIL", "loss became inf at epoch 2")
    rec.finish_run(a, run[2], "PRUNED")
    assert rec.interrupt_runs(a) == 1
    # Trial b has its own seeds 0 and 1.
    for seed, state in ((0, "COMPLETE"), (1, "FAIL")):
        other = rec.start_run(b, seed)
        rec.record_epoch(b, other, 1, {"loss": 7.0 + seed, "accuracy": NAN})
        rec.finish_run(b, other, state, "diverged" if state == "FAIL" else None)

    assert comparable(rec.finished_runs(a.trial_id)) == {
        0: (0, "COMPLETE", None, {"loss": [0.9, 0.5, 0.25], "accuracy": [0.1, 0.5, 0.75]}),
        1: (1, "FAIL", "loss became inf at epoch 2", {"loss": [2.0, None], "accuracy": [0.1, 0.1]}),
    }
    assert comparable(rec.finished_runs(b.trial_id)) == {
        0: (0, "COMPLETE", None, {"loss": [7.0], "accuracy": [None]}),
        1: (1, "FAIL", "diverged", {"loss": [8.0], "accuracy": [None]}),
    }
    assert rec.finished_runs(a.trial_id + b.trial_id + 1) == {}


def test_restarting_a_seed_replaces_that_trials_run_only(store, claims):
    a, b = claims
    rec = Recorder(store.engine)
    kept = rec.start_run(a, 0)
    rec.record_epoch(a, kept, 1, {"loss": 1.0})
    rec.finish_run(a, kept, "COMPLETE")
    rec.start_run(b, 0)
    restarted = rec.start_run(b, 0)  # the same seed of the other trial, retrained
    rows = stored_runs(store)
    assert [(r.run_id, r.trial_id, r.seed, r.state) for r in rows] == [
        (kept, a.trial_id, 0, "COMPLETE"), (restarted, b.trial_id, 0, "RUNNING")]
    assert rec.finished_runs(a.trial_id)[0].history == {"loss": [1.0]}


def test_finish_run_stores_state_error_wall_time_and_the_database_time(store, claims):
    a, _ = claims
    rec = Recorder(store.engine)
    began = time.perf_counter()
    run = rec.start_run(a, 0)
    time.sleep(0.05)
    rec.finish_run(a, run, "FAIL", "loss became nan at epoch 3")
    elapsed = time.perf_counter() - began
    (row,) = stored_runs(store)
    assert (row.state, row.error) == ("FAIL", "loss became nan at epoch 3")
    assert 0.05 <= row.wall_s <= elapsed
    assert (row.finished_at - row.started_at).total_seconds() >= 0.04  # millisecond clock
    # A run this recorder did not start (another process started it): no wall time, no error.
    other = rec.start_run(a, 1)
    Recorder(store.engine).finish_run(a, other, "COMPLETE")
    row = stored_runs(store)[1]
    assert (row.state, row.error, row.wall_s) == ("COMPLETE", None, None)
    assert row.finished_at >= row.started_at


def test_interrupting_marks_the_trials_running_runs_only(store, claims):
    a, b = claims
    rec = Recorder(store.engine)
    done = rec.start_run(a, 0)
    rec.finish_run(a, done, "COMPLETE")
    rec.start_run(a, 1)
    rec.start_run(a, 2)
    rec.start_run(b, 0)
    assert rec.interrupt_runs(a) == 2
    rows = stored_runs(store)
    assert [(r.trial_id, r.seed, r.state) for r in rows] == [
        (a.trial_id, 0, "COMPLETE"), (a.trial_id, 1, "INTERRUPTED"),
        (a.trial_id, 2, "INTERRUPTED"), (b.trial_id, 0, "RUNNING")]
    assert all(r.finished_at >= r.started_at for r in rows[1:3])
    assert rows[3].finished_at is None
    assert rec.interrupt_runs(a) == 0


def test_seconds_adds_up_the_time_spent_writing(store, claims):
    a, _ = claims
    rec = Recorder(store.engine)
    assert rec.seconds == 0.0

    def slow_statement(*args):  # every statement takes at least 10 ms
        time.sleep(0.01)

    sa.event.listen(store.engine, "before_cursor_execute", slow_statement)
    began = time.perf_counter()
    for seed in (0, 1):
        run = rec.start_run(a, seed)  # fence, delete, insert
        rec.record_epoch(a, run, 1, {"loss": 1.0})  # fence, insert
        rec.finish_run(a, run, "COMPLETE")  # fence, update
        rec.hold(a)  # fence
    elapsed = time.perf_counter() - began
    sa.event.remove(store.engine, "before_cursor_execute", slow_statement)
    assert 2 * 8 * 0.01 <= rec.seconds <= elapsed


def test_hold_says_whether_the_claim_still_holds_its_trial(store, claims):
    a, b = claims
    rec = Recorder(store.engine)
    rec.hold(a)
    Leases(store.engine).release(b)
    with pytest.raises(LeaseLost) as lost:
        rec.hold(b)  # released: the check before Optuna's tell refuses
    assert lost.value.trial_id == b.trial_id
    with pytest.raises(LeaseLost):
        rec.hold(a._replace(generation=2))
    rec.hold(a)
