"""hpo's tables live beside Optuna's, cascade with them, and SQLite runs in WAL mode."""

from __future__ import annotations

import optuna
import sqlalchemy as sa

from hpo.store import Store
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
    trial = study.ask()
    recorder = Recorder(store.engine)
    run_id = recorder.start_run(trial._trial_id, seed=3)
    recorder.record_epoch(run_id, 1, {"loss": 1.5, "accuracy": float("nan")})
    recorder.finish_run(run_id, "COMPLETE")
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
    trial = optuna.create_study(storage=store.optuna).ask()
    recorder = Recorder(store.engine)
    first = recorder.start_run(trial._trial_id, seed=0)
    recorder.record_epoch(first, 1, {"loss": 2.0})
    second = recorder.start_run(trial._trial_id, seed=0)
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
