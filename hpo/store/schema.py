"""hpo's tables beside Optuna's: one row per seeded run, one per (run, epoch, metric).

``hpo_runs.trial_id`` references Optuna's ``trials`` with ON DELETE CASCADE, so deleting a study
with Optuna also deletes its runs and their epochs. hpo never alters Optuna's tables nor its
``alembic_version``.
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


# Optuna's trials table, declared only so that the foreign key below resolves; hpo never creates
# or changes it (create_tables names hpo's tables alone).
_optuna_trials = sa.Table(
    "trials", Base.metadata, sa.Column("trial_id", sa.Integer, primary_key=True)
)


class Run(Base):
    """One seeded training of one trial's configuration."""

    __tablename__ = "hpo_runs"
    __table_args__ = (sa.UniqueConstraint("trial_id", "seed", name="uq_hpo_runs_trial_seed"),)

    run_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(
        sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), index=True
    )
    seed: Mapped[int]
    # RUNNING | COMPLETE | FAIL | PRUNED | INTERRUPTED (Ctrl-C: retrained when the trial resumes)
    state: Mapped[str] = mapped_column(sa.String(16))
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


class Lease(Base):
    """Which worker process holds a trial, and when it last said it was alive.

    A RUNNING trial whose holder stopped beating (or, on the same host, whose process is gone)
    is stale: another ``hpo run`` or ``hpo worker`` claims it and completes it. The row stays
    after the trial finishes: it records which machine ran the trial.
    """

    __tablename__ = "hpo_leases"

    trial_id: Mapped[int] = mapped_column(
        sa.ForeignKey("trials.trial_id", ondelete="CASCADE"), primary_key=True
    )
    owner: Mapped[str] = mapped_column(sa.String(160))  # host:pid:token, unique per process
    host: Mapped[str] = mapped_column(sa.String(128))
    pid: Mapped[int]
    heartbeat_at: Mapped[datetime.datetime]


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
    # The mean learning curve: per trial, metric and epoch, across seeds (var with ddof 1).
    "hpo_epoch_curve": """
        SELECT s.study_name AS study, t.number AS trial, e.metric AS metric, e.epoch AS epoch,
               COUNT(e.value) AS n, AVG(e.value) AS mean,
               CASE WHEN COUNT(e.value) > 1 THEN
                   (SUM(e.value * e.value) - SUM(e.value) * SUM(e.value) / COUNT(e.value))
                   / (COUNT(e.value) - 1) END AS var,
               MIN(e.value) AS min, MAX(e.value) AS max
        FROM hpo_epochs e
        JOIN hpo_runs r ON r.run_id = e.run_id
        JOIN trials t ON t.trial_id = r.trial_id
        JOIN studies s ON s.study_id = t.study_id
        GROUP BY s.study_name, t.number, e.metric, e.epoch""",
}


def create_tables(engine: sa.Engine) -> None:
    """Create hpo's tables and views if missing (Optuna creates its own tables)."""
    Base.metadata.create_all(
        engine, tables=[Run.__table__, EpochMetric.__table__, Lease.__table__]
    )
    create = ("CREATE VIEW IF NOT EXISTS" if engine.dialect.name == "sqlite"
              else "CREATE OR REPLACE VIEW")
    with engine.begin() as conn:
        for name, query in VIEWS.items():
            conn.exec_driver_sql(f"{create} {name} AS {query}")
