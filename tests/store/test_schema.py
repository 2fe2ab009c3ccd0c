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
