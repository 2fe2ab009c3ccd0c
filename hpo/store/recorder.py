"""Writing runs and their per-epoch metrics as they happen, one committed transaction each.

A kill therefore loses at most the epoch in flight.
"""

from __future__ import annotations

import datetime
import math
import time
from collections.abc import Mapping
from typing import NamedTuple

import sqlalchemy as sa

from hpo.store.schema import EpochMetric, Run


def _now() -> datetime.datetime:
    # Naive UTC, as Optuna stores its trial times.
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


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
        >>> trial = study.ask()
        >>> rec = Recorder(store.engine)
        >>> run_id = rec.start_run(trial._trial_id, seed=0)
        >>> rec.record_epoch(run_id, 1, {"loss": 0.5, "accuracy": 0.8})
        >>> rec.finish_run(run_id, "COMPLETE")
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._clock: dict[int, float] = {}
        self.seconds = 0.0  # time spent writing: hpo's bookkeeping cost, for benchmarks

    def start_run(self, trial_id: int, seed: int) -> int:
        """Insert a RUNNING run for (trial, seed), replacing an unfinished earlier attempt."""
        began = time.perf_counter()
        with self.engine.begin() as conn:
            conn.execute(sa.delete(Run).where(Run.trial_id == trial_id, Run.seed == seed))
            run_id = conn.execute(
                sa.insert(Run)
                .values(trial_id=trial_id, seed=seed, state="RUNNING", started_at=_now())
                .returning(Run.run_id)
            ).scalar_one()
        self._clock[run_id] = time.perf_counter()
        self.seconds += self._clock[run_id] - began
        return run_id

    def record_epoch(self, run_id: int, epoch: int, logs: Mapping[str, float]) -> None:
        """Commit every metric of one finished epoch."""
        rows = [
            {"run_id": run_id, "epoch": epoch, "metric": name, "value": _finite_or_none(value)}
            for name, value in logs.items()
        ]
        began = time.perf_counter()
        with self.engine.begin() as conn:
            conn.execute(sa.insert(EpochMetric), rows)
        self.seconds += time.perf_counter() - began

    def finish_run(self, run_id: int, state: str, error: str | None = None) -> None:
        """Mark a run COMPLETE, FAIL (with its reason) or PRUNED and store its wall time."""
        began = time.perf_counter()
        started = self._clock.pop(run_id, None)
        wall_s = began - started if started is not None else None
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(Run)
                .where(Run.run_id == run_id)
                .values(state=state, error=error, finished_at=_now(), wall_s=wall_s)
            )
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

    def interrupt_runs(self, trial_id: int) -> int:
        """Mark the trial's RUNNING runs INTERRUPTED (Ctrl-C); return how many."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(Run).where(Run.trial_id == trial_id, Run.state == "RUNNING")
                .values(state="INTERRUPTED", finished_at=_now())
            ).rowcount


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
