"""Trial leases: stale detection on the database's clock, exactly-one claims, and fencing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import optuna
import pytest
import sqlalchemy as sa

from hpo.errors import LeaseLost
from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.store.schema import Lease


@pytest.fixture
def store(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    yield store
    store.dispose()


@pytest.fixture
def study(store):
    return optuna.create_study(storage=store.optuna)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


_LIVE: list[int] = []


@pytest.fixture(autouse=True)
def live_pid():
    """A live process on this machine for "another process" to be: a sleeper of the test's own,
    not its parent (a bug that signals a holder's pid must not hit pytest's runner or mutmut)."""
    process = subprocess.Popen(["sleep", "300"])
    _LIVE[:] = [process.pid]
    yield process.pid
    process.kill()
    process.wait()


def another_process(store, pid: int | None = None, namespace: str | None = None,
                    **kwargs) -> Leases:
    """Leases as another process would hold them (default: a live pid on this machine)."""
    pid = pid or _LIVE[0]
    return Leases(store.engine, owner=f"other:{pid}:{os.urandom(4).hex()}", pid=pid,
                  namespace=namespace, **kwargs)


def test_a_trial_of_a_dead_process_on_this_machine_is_stale_at_once(store, study):
    trial = study.ask()
    another_process(store, dead_pid()).take(trial._trial_id)
    another_process(store).take(study.ask()._trial_id)
    assert [t.number for t in Leases(store.engine).stale(study)] == [0]


def test_a_dead_pid_in_another_pid_namespace_waits_for_the_heartbeat(store, study):
    # Containers sharing a hostname but not a PID namespace: the pid means nothing here.
    trial = study.ask()
    another_process(store, dead_pid(), namespace="other-boot/pid:[1]").take(trial._trial_id)
    assert Leases(store.engine).stale(study) == []
    assert len(Leases(store.engine, stale_after=-1).stale(study)) == 1


def test_a_silent_heartbeat_makes_a_trial_stale_after_the_grace(store, study):
    trial = study.ask()
    another_process(store).take(trial._trial_id)
    watcher = Leases(store.engine, stale_after=0.5)
    assert watcher.stale(study) == []
    time.sleep(0.7)
    assert [t.number for t in watcher.stale(study)] == [0]


def test_the_heartbeat_keeps_a_trial_fresh(store, study):
    trial = study.ask()
    holder = another_process(store)
    claim = holder.take(trial._trial_id)
    watcher = Leases(store.engine, stale_after=0.5)
    with holder.heartbeat(claim, every=0.1):
        time.sleep(0.8)
        assert watcher.stale(study) == []


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Asia/Tokyo"])
def test_staleness_uses_the_database_clock_in_any_time_zone(store, study, monkeypatch, zone):
    # Optuna stores datetime_start in the asking process's local time; hpo never compares it.
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        study.ask()
        assert Leases(store.engine).stale(study) == []  # just asked: its lease is on the way
        watcher = Leases(store.engine, stale_after=0.5)
        assert watcher.stale(study) == []  # found without a lease: timed from now
        time.sleep(0.7)
        assert [t.number for t in watcher.stale(study)] == [0]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_take_after_another_worker_claimed_the_unleased_trial_returns_none(store, study):
    trial = study.ask()
    other = another_process(store, stale_after=-1)
    assert [t.number for t in other.stale(study)] == [0]  # found without a lease
    assert other.claim(trial._trial_id).generation == 1
    assert Leases(store.engine).take(trial._trial_id) is None


def test_take_over_a_placeholder_written_before_the_lease(store, study):
    trial = study.ask()
    assert another_process(store).stale(study) == []  # writes the placeholder
    claim = Leases(store.engine).take(trial._trial_id)
    assert claim is not None and claim.generation == 1


def test_of_racing_claimers_exactly_one_wins(store, study):
    trial = study.ask()
    first = another_process(store)
    first.release(first.take(trial._trial_id))
    claimers = [another_process(store) for _ in range(6)]
    for claimer in claimers:  # all see it stale before any claims it
        assert [t.number for t in claimer.stale(study)] == [0]
    results: list = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.claim(trial._trial_id)))
               for c in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    won = [claim for claim in results if claim is not None]
    assert len(won) == 1 and won[0].generation == 2
    with store.engine.connect() as conn:
        owner = conn.execute(sa.select(Lease.owner)).scalar_one()
    assert owner == won[0].owner


def test_a_holder_that_beat_after_being_seen_stale_keeps_its_trial(store, study):
    trial = study.ask()
    holder = another_process(store)
    claim = holder.take(trial._trial_id)
    watcher = Leases(store.engine, stale_after=-1)
    assert len(watcher.stale(study)) == 1
    time.sleep(0.01)  # the database clock counts milliseconds on SQLite
    holder.check(claim)  # woke up and wrote before the claim
    assert watcher.claim(trial._trial_id) is None
    holder.check(claim)


def test_a_worker_whose_trial_was_taken_over_writes_nothing(store, study):
    trial = study.ask()
    frozen = another_process(store)
    old = frozen.take(trial._trial_id)
    recorder = Recorder(store.engine)
    run_id = recorder.start_run(old, seed=0)
    recorder.record_epoch(old, run_id, 1, {"loss": 1.0})
    taker = Leases(store.engine, stale_after=-1)
    assert [t.number for t in taker.stale(study)] == [0]
    new = taker.claim(trial._trial_id)
    new_run = recorder.start_run(new, seed=0)  # replaces the frozen worker's unfinished run
    for write in (lambda: recorder.record_epoch(old, run_id, 2, {"loss": 0.5}),
                  lambda: recorder.finish_run(old, run_id, "COMPLETE"),
                  lambda: recorder.start_run(old, seed=1),
                  lambda: recorder.interrupt_runs(old),
                  lambda: frozen.check(old)):
        with pytest.raises(LeaseLost) as lost:
            write()
        assert lost.value.holder == taker.owner
    with store.engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id, seed, state FROM hpo_runs")).all()
        epochs = conn.execute(sa.text("SELECT COUNT(*) FROM hpo_epochs")).scalar()
    assert runs == [(new_run, 0, "RUNNING")] and epochs == 0
    assert new_run > run_id  # run ids are never reused


def test_a_late_heartbeat_cannot_undo_a_release(store, study):
    trial = study.ask()
    holder = Leases(store.engine)
    claim = holder.take(trial._trial_id)
    with holder.heartbeat(claim, every=0.01):
        time.sleep(0.05)
    holder.release(claim)
    time.sleep(0.1)
    assert [t.number for t in another_process(store).stale(study)] == [0]


def test_the_heartbeat_stops_when_the_trial_was_taken_over(store, study):
    trial = study.ask()
    holder = another_process(store)
    claim = holder.take(trial._trial_id)
    taker = Leases(store.engine, stale_after=-1)
    with holder.heartbeat(claim, every=0.02):
        taker.stale(study)
        new = taker.claim(trial._trial_id)
        time.sleep(0.2)
        with store.engine.connect() as conn:
            lease = conn.execute(sa.select(Lease)).one()
    assert (lease.owner, lease.generation) == (new.owner, new.generation)
