"""Writing runs and their per-epoch metrics as they happen, one committed transaction each.

A kill therefore loses at most the epoch in flight. Every write is fenced by the writer's
:class:`~hpo.store.lease.Claim` on the trial (checked in the same transaction): a worker whose
trial was taken over writes nothing more and gets :class:`~hpo.errors.LeaseLost`. Times are the
database's clock, naive UTC.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import NamedTuple

import sqlalchemy as sa

from hpo.store.clock import utcnow
from hpo.store.lease import Claim, fence
from hpo.store.schema import EpochMetric, KeptModel, Run


class RecordedRun(NamedTuple):
    """A finished run read back: its state, error and history ({metric: [value per epoch]})."""

    seed: int
    state: str
    error: str | None
    history: dict[str, list[float]]


class Recorder:
    """Records runs into hpo's tables.

    Example:
        >>> import tempfile, os, optuna
        >>> from hpo.store import Store
        >>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "r.db"), create=True)
        >>> study = optuna.create_study(storage=store.optuna)
        >>> from hpo.store.lease import Leases
        >>> claim = Leases(store.engine).take(study.ask()._trial_id)
        >>> rec = Recorder(store.engine)
        >>> run_id = rec.start_run(claim, seed=0)
        >>> rec.record_epoch(claim, run_id, 1, {"loss": 0.5, "accuracy": 0.8})
        >>> rec.finish_run(claim, run_id, "COMPLETE")
        >>> rec.finished_runs(claim.trial_id)[0].history
        {'accuracy': [0.8], 'loss': [0.5]}
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._clock: dict[int, float] = {}
        self.seconds = 0.0  # time spent writing: hpo's bookkeeping cost, for benchmarks

    def start_run(self, claim: Claim, seed: int) -> int:
        """Insert a RUNNING run for (trial, seed), replacing an unfinished earlier attempt."""
        began = time.perf_counter()
        trial_id = claim.trial_id
        with self.engine.begin() as conn:
            fence(conn, claim)
            conn.execute(sa.delete(Run).where(Run.trial_id == trial_id, Run.seed == seed))
            run_id = conn.execute(
                sa.insert(Run)
                .values(trial_id=trial_id, seed=seed, state="RUNNING", started_at=utcnow())
                .returning(Run.run_id)
            ).scalar_one()
        self._clock[run_id] = time.perf_counter()
        self.seconds += self._clock[run_id] - began
        return run_id

    def record_epoch(self, claim: Claim, run_id: int, epoch: int,
                     logs: Mapping[str, float]) -> None:
        """Commit every metric of one finished epoch."""
        rows = [
            {"run_id": run_id, "epoch": epoch, "metric": name, "value": _finite_or_none(value)}
            for name, value in logs.items()
        ]
        began = time.perf_counter()
        with self.engine.begin() as conn:
            fence(conn, claim)
            # One multi-row INSERT, not executemany: psycopg pipelines executemany, and a
            # PostgreSQL session left mid-pipeline by a frozen worker escapes
            # idle_in_transaction_session_timeout (see engine.py), keeping its locks.
            conn.execute(sa.insert(EpochMetric).values(rows))
        self.seconds += time.perf_counter() - began

    def finish_run(self, claim: Claim, run_id: int, state: str, error: str | None = None,
                   model: tuple[str, int] | None = None, ended: float | None = None) -> None:
        """Mark a run COMPLETE, FAIL (with its reason) or PRUNED and store its wall time, from
        its start to ``ended`` (``time.perf_counter()``, default now); with ``model`` (artifact
        id, epoch) record the run's kept model in the same transaction."""
        began = time.perf_counter()
        started = self._clock.pop(run_id, None)
        wall_s = (ended or began) - started if started is not None else None
        with self.engine.begin() as conn:
            fence(conn, claim)
            conn.execute(
                sa.update(Run)
                .where(Run.run_id == run_id)
                .values(state=state, error=error, finished_at=utcnow(), wall_s=wall_s)
            )
            if model is not None:
                artifact_id, epoch = model
                conn.execute(sa.insert(KeptModel).values(run_id=run_id, artifact_id=artifact_id,
                                                         epoch=epoch))
        self.seconds += time.perf_counter() - began

    def hold(self, claim: Claim) -> None:
        """Raise :class:`~hpo.errors.LeaseLost` unless ``claim`` still holds its trial: the
        check before a write outside hpo's tables (Optuna's)."""
        began = time.perf_counter()
        with self.engine.begin() as conn:
            fence(conn, claim)
        self.seconds += time.perf_counter() - began

    def finished_runs(self, trial_id: int) -> dict[int, RecordedRun]:
        """The trial's COMPLETE and FAIL runs by seed, with their histories (NULL reads as NaN).

        A resumed trial reuses them instead of training those seeds again.
        """
        with self.engine.connect() as conn:
            runs = conn.execute(
                sa.select(Run.run_id, Run.seed, Run.state, Run.error)
                .where(Run.trial_id == trial_id, Run.state.in_(("COMPLETE", "FAIL")))
            ).all()
            rows = conn.execute(
                sa.select(EpochMetric.run_id, EpochMetric.metric, EpochMetric.value)
                .where(EpochMetric.run_id.in_([r.run_id for r in runs]))
                .order_by(EpochMetric.run_id, EpochMetric.epoch)
            ).all()
        histories: dict[int, dict[str, list[float]]] = {r.run_id: {} for r in runs}
        for run_id, metric, value in rows:
            histories[run_id].setdefault(metric, []).append(math.nan if value is None else value)
        return {r.seed: RecordedRun(r.seed, r.state, r.error, histories[r.run_id]) for r in runs}

    def wall_times(self, trial_id: int) -> dict[int, tuple[float | None, int]]:
        """The trial's COMPLETE runs by seed: (wall_s, epochs recorded)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(Run.seed, Run.wall_s, sa.func.max(EpochMetric.epoch))
                .join(EpochMetric, EpochMetric.run_id == Run.run_id)
                .where(Run.trial_id == trial_id, Run.state == "COMPLETE")
                .group_by(Run.run_id, Run.seed, Run.wall_s)
            ).all()
        return {seed: (wall_s, epochs) for seed, wall_s, epochs in rows}

    def interrupt_runs(self, claim: Claim) -> int:
        """Mark the trial's RUNNING runs INTERRUPTED (Ctrl-C); return how many."""
        with self.engine.begin() as conn:
            fence(conn, claim)
            return conn.execute(
                sa.update(Run).where(Run.trial_id == claim.trial_id, Run.state == "RUNNING")
                .values(state="INTERRUPTED", finished_at=utcnow())
            ).rowcount


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
