"""hpo's tables beside Optuna's: one row per seeded run, one per (run, epoch, metric).

Deleting a study with plain Optuna (``optuna.delete_study``, any process, with or without hpo
imported) deletes its runs, epochs and leases too: ``hpo_runs`` and ``hpo_leases`` reference
Optuna's ``trials`` with ON DELETE CASCADE, which PostgreSQL always enforces; SQLite enforces
foreign keys only on connections that ask for it, so there triggers on ``trials`` and ``hpo_runs``
do the same work for every connection. hpo never alters Optuna's tables nor its
``alembic_version``; the triggers are hpo's own objects.

Run ids are never reused (SQLite ``AUTOINCREMENT``, PostgreSQL's sequence): a worker that lost
its trial can never address the run that replaced one of its own.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """hpo's tables (SQLAlchemy's declarative base; Optuna's tables are Optuna's own)."""


# Optuna's trials table, declared only so that the foreign key below resolves; hpo never creates
# or changes it (create_tables names hpo's tables alone).
_optuna_trials = sa.Table(
    "trials", Base.metadata, sa.Column("trial_id", sa.Integer, primary_key=True)
)


class Run(Base):
    """One seeded training of one trial's configuration."""

    __tablename__ = "hpo_runs"
    __table_args__ = (sa.UniqueConstraint("trial_id", "seed", name="uq_hpo_runs_trial_seed"),
                      {"sqlite_autoincrement": True})

    run_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(
        sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), index=True
    )
    seed: Mapped[int]
    # RUNNING | COMPLETE | FAIL | PRUNED | INTERRUPTED (Ctrl-C: retrained when the trial resumes)
    state: Mapped[str] = mapped_column(sa.String(16))
    # The database's clock, naive UTC (see hpo.store.clock).
    started_at: Mapped[datetime.datetime]
    finished_at: Mapped[datetime.datetime | None]
    wall_s: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(sa.Text)


class EpochMetric(Base):
    """One metric's value at the end of one epoch (1-based) of one run."""

    __tablename__ = "hpo_epochs"

    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("hpo_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(primary_key=True)
    metric: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    # SQLite stores NaN as NULL: a NULL value is a non-finite metric (e.g. a diverged loss).
    value: Mapped[float | None] = mapped_column(sa.Float)


class KeptModel(Base):
    """A run's trained model kept in the study's artifact store (:mod:`hpo.kept_models`):
    which artifact, and the epoch its weights are from (the last, or the one early stopping
    restored). Written in the transaction that marks the run COMPLETE."""

    __tablename__ = "hpo_models"

    run_id: Mapped[int] = mapped_column(
        sa.ForeignKey("hpo_runs.run_id", ondelete="CASCADE"), primary_key=True
    )
    artifact_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    epoch: Mapped[int]


class Lease(Base):
    """Which worker process holds a trial, since which claim, and when it last said it was alive.

    A RUNNING trial whose holder stopped beating (or, provably on the same machine, whose
    process is gone) is stale: another ``hpo run`` or ``hpo worker`` claims it, which increments
    ``generation``, and completes it. Every write of a holder checks its generation in the same
    transaction (see :mod:`hpo.store.lease`). The row stays after the trial finishes: it records
    which machine ran the trial. ``owner`` is empty for a placeholder: a RUNNING trial found
    without a lease, timed from when it was found.
    """

    __tablename__ = "hpo_leases"

    trial_id: Mapped[int] = mapped_column(
        sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(sa.String(160))  # host:pid:random, unique per process
    host: Mapped[str] = mapped_column(sa.String(128))
    pid: Mapped[int]
    # Boot id and PID namespace of the holder: its pid means something only where both match.
    namespace: Mapped[str] = mapped_column(sa.String(128), default="")
    generation: Mapped[int] = mapped_column(default=1)
    heartbeat_at: Mapped[datetime.datetime]  # the database's clock, naive UTC


def _attr(key: str) -> str:
    # Optuna keeps user attributes as JSON text; a missing spread is stored as null.
    return (f"(SELECT CAST(NULLIF(a.value_json, 'null') AS FLOAT) FROM trial_user_attributes a "
            f"WHERE a.trial_id = t.trial_id AND a.key = '{key}') AS {key}")


# Views for any SQL tool (sqlite3, pd.read_sql, psql): results without hpo.
VIEWS = {
    # One row per trial: its value (the mean over seeds) and the spread across seeds.
    "hpo_trial_summary": f"""
        SELECT s.study_name AS study, t.number AS trial, t.state AS state, v.value AS value,
               {", ".join(_attr(k) for k in ("n", "mean", "std", "sem", "ci95_low",
                                             "ci95_high"))},
               (SELECT COUNT(*) FROM hpo_runs r WHERE r.trial_id = t.trial_id) AS n_runs
        FROM trials t
        JOIN studies s ON s.study_id = t.study_id
        LEFT JOIN trial_values v ON v.trial_id = t.trial_id AND v.objective = 0""",
    # One row per seeded run.
    "hpo_run_summary": """
        SELECT s.study_name AS study, t.number AS trial, r.seed AS seed, r.state AS state,
               r.wall_s AS wall_s, r.error AS error,
               (SELECT MAX(e.epoch) FROM hpo_epochs e WHERE e.run_id = r.run_id) AS epochs
        FROM hpo_runs r
        JOIN trials t ON t.trial_id = r.trial_id
        JOIN studies s ON s.study_id = t.study_id""",
    # The mean learning curve: per trial, metric and epoch, across the trial's COMPLETE and
    # PRUNED runs (FAIL runs are left out, as from the trial's statistics); NULL (non-finite)
    # values are not counted. var: ddof 1, two-pass (the mean first), so never negative.
    "hpo_epoch_curve": """
        WITH v AS (
            SELECT s.study_name AS study, t.number AS trial, e.metric AS metric,
                   e.epoch AS epoch, e.value AS value
            FROM hpo_epochs e
            JOIN hpo_runs r ON r.run_id = e.run_id
            JOIN trials t ON t.trial_id = r.trial_id
            JOIN studies s ON s.study_id = t.study_id
            WHERE r.state IN ('COMPLETE', 'PRUNED')),
        m AS (
            SELECT study, trial, metric, epoch, AVG(value) AS mean
            FROM v GROUP BY study, trial, metric, epoch)
        SELECT v.study AS study, v.trial AS trial, v.metric AS metric, v.epoch AS epoch,
               COUNT(v.value) AS n, m.mean AS mean,
               CASE WHEN COUNT(v.value) > 1 THEN
                   SUM((v.value - m.mean) * (v.value - m.mean)) / (COUNT(v.value) - 1) END AS var,
               MIN(v.value) AS min, MAX(v.value) AS max
        FROM v
        JOIN m ON m.study = v.study AND m.trial = v.trial AND m.metric = v.metric
              AND m.epoch = v.epoch
        GROUP BY v.study, v.trial, v.metric, v.epoch, m.mean""",
}


# SQLite: what the foreign keys' ON DELETE CASCADE does, for connections that leave them off
# (plain Optuna's). Triggers fire on every connection.
_SQLITE_TRIGGERS = {
    "hpo_trial_deleted": """
        AFTER DELETE ON trials FOR EACH ROW BEGIN
            DELETE FROM hpo_leases WHERE trial_id = OLD.trial_id;
            DELETE FROM hpo_runs WHERE trial_id = OLD.trial_id;
        END""",
    "hpo_run_deleted": """
        AFTER DELETE ON hpo_runs FOR EACH ROW BEGIN
            DELETE FROM hpo_epochs WHERE run_id = OLD.run_id;
            DELETE FROM hpo_models WHERE run_id = OLD.run_id;
        END""",
}
# Columns added to hpo_leases since its first version: (name, SQL type and default).
_LEASE_COLUMNS = {"namespace": "VARCHAR(128) NOT NULL DEFAULT ''",
                  "generation": "INTEGER NOT NULL DEFAULT 1"}


def create_tables(engine: sa.Engine) -> None:
    """Create hpo's tables, views and (SQLite) triggers if missing (Optuna creates its own)."""
    Base.metadata.create_all(
        engine, tables=[Run.__table__, EpochMetric.__table__, KeptModel.__table__,
                        Lease.__table__]
    )
    sqlite = engine.dialect.name == "sqlite"
    present = {c["name"] for c in sa.inspect(engine).get_columns("hpo_leases")}
    with engine.begin() as conn:
        for name, definition in _LEASE_COLUMNS.items():
            if name not in present:  # a database from an earlier hpo
                conn.exec_driver_sql(f"ALTER TABLE hpo_leases ADD COLUMN {name} {definition}")
        for name, query in VIEWS.items():
            if sqlite:
                _sqlite_replace(conn, "view", name, f"CREATE VIEW {name} AS {query}")
            else:
                conn.exec_driver_sql(f"CREATE OR REPLACE VIEW {name} AS {query}")
        if sqlite:
            for name, body in _SQLITE_TRIGGERS.items():
                _sqlite_replace(conn, "trigger", name, f"CREATE TRIGGER {name} {body}")


def _sqlite_replace(conn: sa.Connection, kind: str, name: str, create: str) -> None:
    """Create SQLite's view or trigger ``name`` with ``create``, dropping one an earlier hpo
    wrote otherwise (SQLite cannot replace either; an older trigger cleans fewer tables)."""
    found = conn.exec_driver_sql(
        "SELECT sql FROM sqlite_master WHERE type = ? AND name = ?", (kind, name)).scalar()
    if found != create:
        conn.exec_driver_sql(f"DROP {kind.upper()} IF EXISTS {name}")
        conn.exec_driver_sql(create)
