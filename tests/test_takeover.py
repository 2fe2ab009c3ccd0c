"""A frozen worker is taken over, and when it wakes it writes nothing more for that trial.

Worker A (New York time) freezes with SIGSTOP after its first epoch, as a suspended laptop or a
stalled machine would, heartbeat thread and all: on SQLite between two writes, on PostgreSQL inside
the epoch's write transaction, holding the lease row's lock (the server ends that session after
the stale limit, so the claim goes through). Worker B (Tokyo time) joins, finds A's trial
stale past the limit by the database's clock, claims it and completes the sweep. A is then woken
with SIGCONT: its next write is refused (fencing), it says so in one line, drops the trial and
exits 0. The study must equal an uninterrupted sweep, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import assert_same_study, study_contents

HARNESS = Path(__file__).with_name("kill_harness.py")
# Short enough for a test; the defaults (60 s, 10 s) suit real networks and real stalls.
LEASE_ENV = {"HPO_STALE_AFTER_S": "3", "HPO_HEARTBEAT_S": "0.5"}


def worker(sweep_file, url: str, label: str, tz: str, **env) -> subprocess.Popen:
    command = [sys.executable, str(HARNESS)] if "HPO_KILL_AT" in env else [
        sys.executable, "-m", "hpo"]
    return subprocess.Popen(
        [*command, "worker", str(sweep_file), "--storage", url, "--set", "protocol.pack=false",
         "--label", label],
        env={**os.environ, **LEASE_ENV, "TZ": tz, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def is_stopped(process: subprocess.Popen) -> bool:
    assert process.poll() is None, process.communicate()
    return Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def lease_generation(url: str, trial_number: int) -> int | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT l.generation FROM hpo_leases l JOIN trials t ON t.trial_id = l.trial_id "
                "WHERE t.number = :n"), {"n": trial_number}).scalar()
    except sa.exc.OperationalError:  # the tables are not made yet
        return None
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def reference(small_study):
    return study_contents(small_study[1])


@pytest.mark.parametrize(("backend", "freeze"), [("sqlite", "stop:1"),
                                               ("postgresql", "stop-in-write:1")])
def test_a_frozen_worker_is_taken_over_and_then_writes_nothing(
        backend, freeze, sweep_file, tmp_path, request, reference):
    url = (f"sqlite:///{tmp_path / 'study.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    frozen = worker(sweep_file, url, "a", "America/New_York", HPO_KILL_AT=freeze)
    wait_for(lambda: is_stopped(frozen), "worker a to freeze after its first epoch")
    taker = worker(sweep_file, url, "b", "Asia/Tokyo")
    try:
        wait_for(lambda: lease_generation(url, 0) == 2 or taker.poll() is not None,
                 "worker b to claim trial #0", timeout=180)
    except AssertionError:
        for process in (frozen, taker):
            process.kill()
        raise AssertionError(f"worker b did not claim trial #0: {taker.communicate()}; "
                             f"worker a: {frozen.communicate()}") from None
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert lease_generation(url, 0) == 2, taker.communicate()
    outputs = {}
    for name, process in (("a", frozen), ("b", taker)):
        out, err = process.communicate(timeout=600)
        outputs[name] = out
        assert process.returncode == 0, (name, err[-3000:])
        assert "Traceback" not in err and "hpo: error" not in err, (name, err[-3000:])
    assert "[b] resuming trial #0" in outputs["b"]
    taken = [line for line in outputs["a"].splitlines() if "taken over" in line]
    assert len(taken) == 1 and taken[0].startswith("[a] trial #0 was taken over by ")
    assert taken[0].endswith("; dropping its in-flight runs")
    got = study_contents(url)
    assert got["per_trial"] == [(0, 3, 3), (1, 3, 3)]  # every (trial, seed) once, COMPLETE
    assert got["epochs"] == 2 * 3 * 2 * 4  # every epoch of every seed, none twice
    assert_same_study(got, reference)
