"""Trial leases: stale detection on the database's clock, exactly-one claims, and fencing."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from hpo.errors import LeaseLost
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.store.schema import Lease


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
    assert process.poll() is None, "probing a holder's pid must not signal it (signal 0)"
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


def test_a_released_lease_refuses_beats_and_writes(store, study):
    trial = study.ask()
    holder = Leases(store.engine)
    claim = holder.take(trial._trial_id)
    with holder.heartbeat(claim, every=0.01):
        time.sleep(0.05)
    holder.release(claim)
    with pytest.raises(LeaseLost):  # a late beat, or a write, after the release
        holder.check(claim)
    with pytest.raises(LeaseLost):
        Recorder(store.engine).start_run(claim, seed=0)
    assert [t.number for t in another_process(store).stale(study)] == [0]


def test_the_heartbeat_stops_when_the_trial_was_taken_over(store, study):
    trial = study.ask()
    holder = another_process(store)
    claim = holder.take(trial._trial_id)
    taker = Leases(store.engine, stale_after=-1)
    beats = []

    @sa.event.listens_for(store.engine, "before_cursor_execute")
    def count(conn, cursor, statement, *args):
        if statement.startswith("UPDATE hpo_leases") and threading.current_thread().name \
                .startswith("hpo-heartbeat"):
            beats.append(time.monotonic())

    with holder.heartbeat(claim, every=0.02):
        time.sleep(0.1)
        assert beats  # it was beating
        # The holder beats every 20 ms, and a beat between stale() and claim() keeps the lease
        # (as it should: the holder is alive); on a loaded machine the taker may need tries.
        new, deadline = None, time.monotonic() + 30
        while new is None and time.monotonic() < deadline:
            taker.stale(study)
            new = taker.claim(trial._trial_id)
        assert new is not None
        time.sleep(0.1)  # the next beat finds the lease taken and ends the thread
        seen = len(beats)
        time.sleep(0.2)
        assert len(beats) == seen  # no more beats
    with store.engine.connect() as conn:
        lease = conn.execute(sa.select(Lease)).one()
    assert (lease.owner, lease.generation) == (new.owner, new.generation)


# --- Each operation acts on its own trial, owner and generation only (several trials at once) --


def lease_rows(store) -> dict[int, tuple]:
    """trial id → (owner, generation, heartbeat_at, host, pid) of every lease row."""
    with store.engine.connect() as conn:
        return {row.trial_id: (row.owner, row.generation, row.heartbeat_at, row.host, row.pid)
                for row in conn.execute(sa.select(Lease))}


def test_a_worker_never_finds_its_own_held_trial_stale_but_finds_its_released_one(store, study):
    # Its own pid is on its leases: judged like another holder's, its live trial looks "gone".
    held, released, dead = study.ask(), study.ask(), study.ask()
    mine = Leases(store.engine, stale_after=3600)
    mine.take(held._trial_id)
    mine.release(mine.take(released._trial_id))
    another_process(store, dead_pid()).take(dead._trial_id)
    assert [t.number for t in mine.stale(study)] == [1, 2]


def test_take_leases_the_trial_it_is_given(store, study):
    study.ask()
    second = study.ask()
    leases = Leases(store.engine)
    claim = leases.take(second._trial_id)  # not the lowest id: the row must name its trial
    assert claim == (second._trial_id, leases.owner, 1)
    assert list(lease_rows(store)) == [second._trial_id]
    leases.check(claim)


def test_taking_over_a_placeholder_makes_that_trial_ours_and_leaves_the_others(store, study):
    first, second = study.ask(), study.ask()
    assert another_process(store).stale(study) == []  # placeholders for both
    leases = Leases(store.engine)
    claim = leases.take(second._trial_id)
    assert claim == (second._trial_id, leases.owner, 1)
    leases.check(claim)  # the row is ours now: fenced writes go through
    rows = lease_rows(store)
    assert rows[second._trial_id][:2] == (leases.owner, 1)
    assert rows[second._trial_id][3:] == (leases.host, leases.pid)
    assert rows[first._trial_id][:2] == ("", 0)  # still a placeholder


def test_placeholders_are_written_for_exactly_the_trials_found_without_a_lease(store, study):
    unleased, leased = study.ask(), study.ask()
    holder = another_process(store)
    holder.take(leased._trial_id)
    assert Leases(store.engine).stale(study) == []
    rows = lease_rows(store)
    assert sorted(rows) == [unleased._trial_id, leased._trial_id]
    assert rows[unleased._trial_id][:2] == ("", 0)
    assert rows[leased._trial_id][:2] == (holder.owner, 1)


def test_a_claim_holds_only_with_its_owner_and_its_generation(store, study):
    trial = study.ask()
    leases = Leases(store.engine, stale_after=3600)
    first = leases.take(trial._trial_id)
    forged = first._replace(owner="someone-else")
    with pytest.raises(LeaseLost) as lost:
        leases.check(forged)
    assert (lost.value.trial_id, lost.value.holder) == (trial._trial_id, leases.owner)
    leases.release(forged)  # not its lease: nothing is released
    assert leases.stale(study) == []
    leases.release(first)
    assert [t.number for t in leases.stale(study)] == [0]
    second = leases.claim(trial._trial_id)  # the same worker resumes it: a new claim
    assert second == (trial._trial_id, leases.owner, 2)
    with pytest.raises(LeaseLost):
        leases.check(first)  # the old claim's writes are fenced off...
    leases.release(first)  # ...and it cannot release the new one
    assert leases.stale(study) == []
    leases.check(second)


def test_release_and_claim_act_on_their_own_trial_only(store, study):
    a, b, c = study.ask(), study.ask(), study.ask()
    holder = another_process(store)
    claims = [holder.take(t._trial_id) for t in (a, b, c)]  # same owner, same generation
    holder.release(claims[0])
    holder.release(claims[1])
    watcher = Leases(store.engine, stale_after=3600)
    assert [t.number for t in watcher.stale(study)] == [0, 1]
    assert watcher.claim(a._trial_id) == (a._trial_id, watcher.owner, 2)
    rows = lease_rows(store)
    assert rows[b._trial_id][:3] == (holder.owner, 1, datetime.datetime(1970, 1, 1))
    assert rows[c._trial_id][:2] == (holder.owner, 1)
    holder.check(claims[2])
    assert watcher.claim(b._trial_id) == (b._trial_id, watcher.owner, 2)


def test_a_claim_loses_to_one_made_and_released_since_it_looked(store, study):
    trial = study.ask()
    holder = another_process(store)
    holder.release(holder.take(trial._trial_id))
    late, quick = Leases(store.engine, owner="late"), Leases(store.engine, owner="quick")
    assert len(late.stale(study)) == 1 and len(quick.stale(study)) == 1
    quick.release(quick.claim(trial._trial_id))  # generation 2, released again: same heartbeat
    assert late.claim(trial._trial_id) is None  # it saw generation 1
    assert lease_rows(store)[trial._trial_id][:2] == ("quick", 2)


def test_claim_takes_only_what_stale_reported(store, study):
    trial = study.ask()
    holder = another_process(store)
    holder.release(holder.take(trial._trial_id))
    assert Leases(store.engine).claim(trial._trial_id) is None


def test_a_finished_trial_is_never_stale(store, study):
    trial = study.ask()
    holder = another_process(store, dead_pid())
    holder.release(holder.take(trial._trial_id))
    study.tell(trial, 1.0)  # its lease row stays: it records which machine ran the trial
    assert Leases(store.engine, stale_after=-1).stale(study) == []


@pytest.mark.parametrize("unreadable", ["boot_id", "pid namespace"])
def test_where_linux_does_not_say_the_namespace_is_empty_and_no_pid_is_probed(
        store, study, monkeypatch, unreadable):
    def fail(*args, **kwargs):
        raise OSError("not on this system")

    if unreadable == "boot_id":
        monkeypatch.setattr(Path, "read_text", fail)
    else:
        monkeypatch.setattr(os, "readlink", fail)
    blind = Leases(store.engine)
    monkeypatch.undo()
    assert blind.namespace == ""
    trial = study.ask()
    another_process(store, dead_pid(), namespace="").take(trial._trial_id)
    assert blind.stale(study) == []  # a dead pid, but nothing proves it ran here


def test_a_holder_pid_of_another_user_counts_as_alive(store, study, monkeypatch):
    trial = study.ask()
    another_process(store, dead_pid()).take(trial._trial_id)

    def denied(pid, sig):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", denied)
    assert Leases(store.engine).stale(study) == []


def test_a_placeholder_that_loses_the_race_to_the_askers_own_lease_is_dropped(store, study):
    # The asker takes its lease between stale()'s look for leases and its placeholder insert.
    trial = study.ask()
    asker = another_process(store)
    taken: list = []

    def asker_takes_first(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO hpo_leases") and not taken:
            taken.append("asking")  # before take(): its own INSERT comes through here too
            taken.append(asker.take(trial._trial_id))

    sa.event.listen(store.engine, "before_cursor_execute", asker_takes_first)
    try:
        assert Leases(store.engine).stale(study) == []  # no error, and the trial is held
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", asker_takes_first)
    assert taken[1] == (trial._trial_id, asker.owner, 1)
    assert lease_rows(store)[trial._trial_id][:2] == (asker.owner, 1)
