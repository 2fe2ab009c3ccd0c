"""Trial leases: stale detection (dead process, silent heartbeat) and exactly-one claims."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid

import optuna
import pytest
import sqlalchemy as sa

from hpo.store import Store
from hpo.store.lease import Leases
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


def another_process(store, pid: int | None = None, **kwargs) -> Leases:
    """Leases as another process on this host would hold them (default: a live pid)."""
    leases = Leases(store.engine, **kwargs)
    leases.pid = pid or os.getppid()
    leases.owner = f"{leases.host}:{leases.pid}:{uuid.uuid4().hex[:12]}"
    return leases


def test_a_trial_of_a_dead_process_on_this_host_is_stale_at_once(store, study):
    trial = study.ask()
    another_process(store, dead_pid()).take(trial._trial_id)
    another_process(store).take(study.ask()._trial_id)
    assert [t.number for t in Leases(store.engine).stale(study)] == [0]


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
    holder.take(trial._trial_id)
    watcher = Leases(store.engine, stale_after=0.5)
    with holder.heartbeat(trial._trial_id, every=0.1):
        time.sleep(0.8)
        assert watcher.stale(study) == []


def test_a_trial_without_lease_is_stale_only_after_the_grace(store, study):
    study.ask()
    assert Leases(store.engine).stale(study) == []  # just asked: its lease is on the way
    assert len(Leases(store.engine, stale_after=-1).stale(study)) == 1


def test_of_racing_claimers_exactly_one_wins(store, study):
    trial = study.ask()
    first = another_process(store)
    first.take(trial._trial_id)
    first.release(trial._trial_id)
    claimers = [another_process(store) for _ in range(6)]
    for claimer in claimers:  # all see it stale before any claims it
        assert [t.number for t in claimer.stale(study)] == [0]
    results: list[bool] = []
    threads = [threading.Thread(target=lambda c=c: results.append(c.claim(trial._trial_id)))
               for c in claimers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]
    with store.engine.connect() as conn:
        owner = conn.execute(sa.select(Lease.owner)).scalar_one()
    assert owner in {c.owner for c in claimers}
