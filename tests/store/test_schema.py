"""hpo's tables live beside Optuna's, cascade with them, and SQLite runs in WAL mode."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import optuna
import pytest
import sqlalchemy as sa

from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder


def test_tables_pragmas_and_cascade(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    assert {"hpo_runs", "hpo_epochs", "trials", "studies"} <= set(store.table_names())
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        # hpo keeps out of Optuna's schema versioning.
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM alembic_version").scalar() == 1

    study = optuna.create_study(study_name="s", storage=store.optuna)
    claim = Leases(store.engine).take(study.ask()._trial_id)
    recorder = Recorder(store.engine)
    run_id = recorder.start_run(claim, seed=3)
    recorder.record_epoch(claim, run_id, 1, {"loss": 1.5, "accuracy": float("nan")})
    recorder.finish_run(claim, run_id, "COMPLETE")
    with store.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT metric, value FROM hpo_epochs ORDER BY metric")).all()
    assert rows == [("accuracy", None), ("loss", 1.5)]  # a non-finite value is stored as NULL

    optuna.delete_study(study_name="s", storage=store.optuna)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM hpo_runs")).scalar() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM hpo_epochs")).scalar() == 0
    store.dispose()


def test_restarting_a_seed_replaces_its_unfinished_run(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    claim = Leases(store.engine).take(optuna.create_study(storage=store.optuna).ask()._trial_id)
    recorder = Recorder(store.engine)
    first = recorder.start_run(claim, seed=0)
    recorder.record_epoch(claim, first, 1, {"loss": 2.0})
    second = recorder.start_run(claim, seed=0)
    with store.engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id FROM hpo_runs")).scalars().all()
        epochs = conn.execute(sa.text("SELECT COUNT(*) FROM hpo_epochs")).scalar()
    assert runs == [second] and epochs == 0
    store.dispose()


def test_views_answer_without_hpo(small_study):
    import sqlite3

    import numpy as np

    from hpo import Results

    sweep, url = small_study
    Store.open(url, create=True).dispose()  # views are made when hpo opens the database
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        summary = conn.execute("SELECT trial, state, value, n, mean, std, ci95_low, n_runs "
                               "FROM hpo_trial_summary WHERE study = ? ORDER BY trial",
                               ("small",)).fetchall()
        curve = conn.execute("SELECT trial, epoch, n, mean, var FROM hpo_epoch_curve "
                             "WHERE study = ? AND metric = 'val_accuracy' ORDER BY trial, epoch",
                             ("small",)).fetchall()
        runs = conn.execute("SELECT COUNT(*), SUM(epochs) FROM hpo_run_summary WHERE study = ?",
                            ("small",)).fetchone()
    with Results(url) as r:
        trials = r.trials("small")
        curves = r.curves("small", "val_accuracy")
    assert [row[0] for row in summary] == trials["number"].tolist()
    assert np.allclose([row[2] for row in summary], trials["value"])
    assert np.allclose([row[5] for row in summary], trials["std"])
    assert [row[3] for row in summary] == [3, 3] and [row[7] for row in summary] == [3, 3]
    assert np.allclose([row[3] for row in curve], curves["mean"])
    assert np.allclose([row[4] for row in curve], curves["std"] ** 2)
    assert runs == (6, 6 * sweep.train.epochs)


def recorded_trial(store, study: optuna.Study) -> int:
    """A trial with a lease, a run, an epoch and a kept model, as hpo records them; returns
    its trial id."""
    claim = Leases(store.engine).take(study.ask()._trial_id)
    recorder = Recorder(store.engine)
    run_id = recorder.start_run(claim, seed=0)
    recorder.record_epoch(claim, run_id, 1, {"loss": 1.0})
    recorder.finish_run(claim, run_id, "COMPLETE", model=(f"model-of-run-{run_id}", 1))
    return claim.trial_id


def counts(url: str) -> tuple:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        found = tuple(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar()
                      for table in ("hpo_runs", "hpo_epochs", "hpo_leases", "hpo_models"))
    engine.dispose()
    return found


PLAIN_OPTUNA_DELETE = """
import sys, optuna
optuna.delete_study(study_name="s", storage=sys.argv[1])
assert "hpo" not in sys.modules
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_study_deleted_by_plain_optuna_takes_its_runs_along(backend, sqlite_url, request):
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    store = Store.open(url, create=True)
    study = optuna.create_study(study_name="s", storage=store.optuna)
    trial_id = recorded_trial(store, study)
    assert counts(url) == (1, 1, 1, 1)
    store.dispose()
    # Another process, without hpo: SQLite's foreign keys are off on its connections.
    deleted = subprocess.run([sys.executable, "-c", PLAIN_OPTUNA_DELETE, url],
                             capture_output=True, text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert counts(url) == (0, 0, 0, 0)
    store = Store.open(url, create=True)
    study = optuna.create_study(study_name="s", storage=store.optuna)
    reused = study.ask()._trial_id  # SQLite hands out the deleted trial's id again
    assert Leases(store.engine).take(reused) is not None
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM hpo_runs WHERE trial_id = :t"),
                            {"t": reused}).scalar() == 0
    if backend == "sqlite":
        assert reused == trial_id
    store.dispose()


def test_run_ids_are_never_reused(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    study = optuna.create_study(study_name="s", storage=store.optuna)
    recorded_trial(store, study)
    with store.engine.begin() as conn:
        first = conn.execute(sa.text("SELECT MAX(run_id) FROM hpo_runs")).scalar()
        conn.execute(sa.text("DELETE FROM hpo_runs"))
    recorded_trial(store, study)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT MAX(run_id) FROM hpo_runs")).scalar() > first
    store.dispose()


def test_importing_and_using_hpo_leaves_other_sqlite_databases_alone(tmp_path, sqlite_url):
    Store.open(sqlite_url, create=True).dispose()
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with other.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    other.dispose()


def test_the_curve_view_variance_is_stable_and_leaves_failed_runs_out(sqlite_url):
    import numpy as np

    store = Store.open(sqlite_url, create=True)
    study = optuna.create_study(study_name="s", storage=store.optuna)
    claim = Leases(store.engine).take(study.ask()._trial_id)
    recorder = Recorder(store.engine)
    # Large values with a tiny spread: the one-pass formula cancels to 0 or below.
    values = [1e9 + 0.1, 1e9 + 0.2, 1e9 + 0.4]
    for seed, value in enumerate([*values, 5.0]):
        run_id = recorder.start_run(claim, seed=seed)
        recorder.record_epoch(claim, run_id, 1, {"loss": value})
        recorder.finish_run(claim, run_id, "FAIL" if seed == 3 else "COMPLETE")
    with store.engine.connect() as conn:
        n, mean, var = conn.execute(sa.text(
            "SELECT n, mean, var FROM hpo_epoch_curve WHERE metric = 'loss'")).one()
    assert n == 3
    assert mean == pytest.approx(np.mean(values))
    assert var == pytest.approx(np.var(values, ddof=1), rel=1e-6)
    store.dispose()


def test_an_earlier_hpos_trigger_is_replaced_by_one_that_cleans_kept_models(sqlite_url):
    store = Store.open(sqlite_url, create=True)
    with store.engine.begin() as conn:  # as a database from before hpo_models existed
        conn.exec_driver_sql("DROP TRIGGER hpo_run_deleted")
        conn.exec_driver_sql("CREATE TRIGGER hpo_run_deleted AFTER DELETE ON hpo_runs FOR EACH "
                             "ROW BEGIN DELETE FROM hpo_epochs WHERE run_id = OLD.run_id; END")
    store.dispose()
    store = Store.open(sqlite_url, create=True)
    study = optuna.create_study(study_name="s", storage=store.optuna)
    recorded_trial(store, study)
    store.dispose()
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:  # foreign keys off
        conn.execute("DELETE FROM hpo_runs")
        assert conn.execute("SELECT COUNT(*) FROM hpo_models").fetchone() == (0,)
