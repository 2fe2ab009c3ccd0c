"""Kill -9 and Ctrl-C, then resume: nothing recorded is lost, nothing is counted twice.

Each stage runs the real ``hpo`` command in a subprocess that kills itself at a chosen point (see
``kill_harness.py``); the next stage resumes the same study, in another time zone (west and east
of UTC by turns: leases and staleness must not depend on the processes' clocks). The runs being
deterministic, the resumed study must hold exactly what an uninterrupted sweep holds, run by run
and trial by trial (value, n, spread, CI, intermediate values).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_same_study, study_contents

HARNESS = Path(__file__).with_name("kill_harness.py")


ZONES = ["America/New_York", "Asia/Tokyo"]


def hpo(args: list[str], kill_at: str | None = None,
        tz: str = "America/New_York") -> subprocess.CompletedProcess:
    env = {**os.environ, "TZ": tz}
    if kill_at:
        env["HPO_KILL_AT"] = kill_at
    command = [sys.executable, str(HARNESS)] if kill_at else [sys.executable, "-m", "hpo"]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def reference(small_study):
    """The same sweep, uninterrupted (solo and packed seeds give the same numbers)."""
    _, url = small_study
    return study_contents(url)


def integrity(db: Path) -> tuple:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()


def assert_complete_and_equal(db: Path, reference) -> None:
    assert integrity(db) == ("ok",)
    resumed = study_contents(f"sqlite:///{db}")
    assert resumed["per_trial"] == [(0, 3, 3), (1, 3, 3)]
    assert resumed["epochs"] == 2 * 3 * 2 * 4  # trials × seeds × epochs × (loss, acc, val_*)
    assert_same_study(resumed, reference)


def test_killed_at_every_point_then_resumed_equals_an_uninterrupted_sweep(
        tmp_path, sweep_file, reference):
    db = tmp_path / "study.db"
    args = ["run", str(sweep_file), "--storage", f"sqlite:///{db}", "--set", "protocol.pack=false"]
    killed = -signal.SIGKILL
    stages = [  # 2 trials × 3 seeds × 2 epochs, one seed at a time
        ("epoch:3", killed),        # during training: trial 0, seed 1's second epoch
        ("interrupt:1", 130),       # Ctrl-C while seed 1 trains again (at its 2nd epoch's write)
        ("run-end:1", killed),      # between seeds: seed 1 done, seed 2 not started
        ("epoch-write:1", killed),  # during a database write: seed 2's first epoch
        ("trial-end:1", killed),    # between trials: trial 0 told COMPLETE
        ("epoch-write:1", killed),  # during the first write of trial 1
    ]
    seed0_run = None
    for number, (stage, code) in enumerate(stages):
        done = hpo(args, kill_at=stage, tz=ZONES[number % 2])
        assert done.returncode == code, (stage, done.stderr[-2000:])
        assert integrity(db) == ("ok",)
        with sqlite3.connect(db) as conn:
            run = conn.execute("SELECT run_id FROM hpo_runs WHERE trial_id = 1 AND seed = 0 "
                               "AND state = 'COMPLETE'").fetchone()
            runs = conn.execute("SELECT seed, state FROM hpo_runs WHERE trial_id = 1 "
                                "ORDER BY seed").fetchall()
        seed0_run = seed0_run or run
        assert run == seed0_run  # a finished seed is reused, never trained again
        if code == 130:
            assert done.stderr.strip().splitlines()[-1] == (
                "hpo: interrupted; run the same command again to resume")
            assert runs == [(0, "COMPLETE"), (1, "INTERRUPTED")]
    finished = hpo(args, tz="Asia/Tokyo")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resuming trial #1" in finished.stdout
    assert_complete_and_equal(db, reference)


def test_packed_seeds_killed_during_training_are_retrained(tmp_path, sweep_file, reference):
    db = tmp_path / "study.db"
    args = ["run", str(sweep_file), "--storage", f"sqlite:///{db}"]
    # After seed 1's first epoch is written: the pack is mid-way through its first epoch's writes.
    assert hpo(args, kill_at="epoch:2", tz="Asia/Tokyo").returncode == -signal.SIGKILL
    finished = hpo(args, tz="America/Los_Angeles")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resuming trial #0" in finished.stdout
    assert_complete_and_equal(db, reference)
