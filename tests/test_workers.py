"""Four worker processes share one study, on SQLite and on PostgreSQL.

The workers start together on an empty database, so they also race to create the tables and the
study. Every grid point is trained exactly once, and every run and epoch of every worker lands.
Each worker asks two trials at a time and trains them together (``pack_trials = 2``), so
batches of trials are shared too.
"""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from hpo import Results

WIDTHS = [2, 4, 8, 16]  # four workers asking two trials each: they race for every point
WORKERS = 4


def run_workers(sweep_file, url: str) -> list[subprocess.CompletedProcess]:
    command = [sys.executable, "-m", "hpo", "worker", str(sweep_file), "--storage", url,
               "--set", f"search.space.width={WIDTHS}", "--set", "protocol.repeats=2",
               "--set", "data.limit_train=200", "--set", "data.limit_test=100",
               "--set", "protocol.pack_trials=2"]
    workers = [subprocess.Popen([*command, "--label", f"w{i}"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ))
               for i in range(WORKERS)]
    return [subprocess.CompletedProcess(w.args, w.wait(timeout=600), *w.communicate())
            for w in workers]


def assert_every_point_once(url: str, outputs) -> None:
    for done in outputs:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "database is locked" not in done.stderr
    with Results(url) as r:
        trials, runs, epochs = r.trials("small"), r.runs("small"), r.epochs("small")
    assert sorted(trials["width"]) == WIDTHS  # each grid point once (skipped races left out)
    assert (trials["state"] == "COMPLETE").all() and (trials["n"] == 2).all()
    assert len(runs) == 2 * len(WIDTHS) and (runs["state"] == "COMPLETE").all()
    assert len(epochs) == len(WIDTHS) * 2 * 2 * 4  # trials × seeds × epochs × metrics
    workers_used = sum("trial #" in done.stdout for done in outputs)
    assert workers_used >= 2  # the study really was shared
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        leases = conn.execute(sa.text("SELECT COUNT(DISTINCT owner) FROM hpo_leases")).scalar()
    engine.dispose()
    assert leases >= 2


def test_four_workers_share_one_sqlite_file(tmp_path, sweep_file):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert_every_point_once(url, run_workers(sweep_file, url))


def test_four_workers_share_one_postgresql_database(postgres_url, sweep_file):
    assert_every_point_once(postgres_url, run_workers(sweep_file, postgres_url))


def test_run_with_jobs_starts_workers_and_prints_the_table(tmp_path, sweep_file):
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "hpo", "run", str(sweep_file), "--storage", url, "--jobs", "2",
         "--set", "protocol.repeats=2", "--set", "train.epochs=1"],
        capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[w1]" in done.stdout and "[w2]" in done.stdout
    assert "study small (maximize mean over seeds)" in done.stdout
    with Results(url) as r:
        trials = r.trials("small")
    assert sorted(trials["width"]) == [4, 16] and (trials["n"] == 2).all()
