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
    state: Mapped[str] = mapped_column(sa.String(16))  # RUNNING | COMPLETE | FAIL
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


def create_tables(engine: sa.Engine) -> None:
    """Create hpo's tables if missing (Optuna creates its own)."""
    Base.metadata.create_all(engine, tables=[Run.__table__, EpochMetric.__table__])
