"""The epoch rules: what happens to a run after each epoch, for solo runs and packed replicas alike.

Both trainers train an epoch their own way (one ``fit`` call, or a :class:`~hpo.training.packs.Pack`
for all replicas) and then hand every run's logs to the same code here, :func:`end_epoch`, which
applies these rules to each :class:`RunEpochs` (one per run or replica):

1. A NaN or infinite loss: that epoch is recorded and reported, then the run fails with
   :class:`~hpo.training.job.NonFiniteLoss` ("loss became nan in epoch 3") and trains no more.
2. Keras' ``EarlyStopping`` (when the spec has one) judges the epoch; hpo calls its hooks itself,
   so that its state spans the per-epoch ``fit`` calls and, packed, follows one replica.
3. The run's last epoch is the spec's final one or the one after which ``EarlyStopping`` set
   ``model.stop_training``; then ``EarlyStopping`` puts the kept (best) weights back.
4. With ``evaluate_test`` the test split is evaluated after the last epoch (once for all runs
   whose last epoch it is, with their restored weights) and its ``test_*`` values join that
   epoch's record.
5. The record is appended to the run's history and reported with ``RunSink.run_epoch``.
6. After a run's last record, ``RunSink.run_trained`` gets its model (the weights it ended
   with, or those early stopping restored) and the epoch they are from.

The trainer's loop then calls ``RunSink.epoch_ended`` and reads ``RunSink.stopping``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from hpo._imports import LazyImport
from hpo.config import TrainSpec
from hpo.training.job import NonFiniteLoss, RunSink

keras = LazyImport("keras")


def early_stopping(spec: TrainSpec, model: keras.Model) -> keras.callbacks.EarlyStopping | None:
    """Keras' ``EarlyStopping`` watching ``model``, started, or None when the spec has none.

    The mode is explicit: a packed replica's model is not compiled, so Keras could not infer it.

    Example:
        >>> early_stopping(TrainSpec(), model=None) is None
        True
    """
    if not spec.early_stopping:
        return None
    settings = dict(spec.early_stopping)
    metric = settings["monitor"].removeprefix("val_")
    settings.setdefault("mode", "min" if metric in ("loss", "mse", "mae") else "max")
    stopper = keras.callbacks.EarlyStopping(**settings)
    stopper.set_model(model)
    stopper.on_train_begin()
    return stopper


class Record(NamedTuple):
    """One epoch's logs of one run (epoch 1-based)."""

    epoch: int
    logs: dict[str, float]


class RunEpochs:
    """One run's (or packed replica's) epochs: the rules each epoch goes through, and its history.

    ``model`` holds the run's current weights after every epoch (``EarlyStopping`` watches and
    restores it). The trainer hands each epoch's logs to :func:`end_epoch` until :attr:`done`.

    Attributes:
        seed: the run's seed, as reported to the sink.
        history: ``{key: [value per epoch]}``, the run's recorded epochs.
        done: no more epochs for this run: its last epoch is recorded, or it failed.
        failure: the :class:`~hpo.training.job.NonFiniteLoss` that failed the run, or None.
    """

    def __init__(self, seed: int, model: keras.Model, spec: TrainSpec, sink: RunSink) -> None:
        self.seed, self.model, self.spec, self.sink = seed, model, spec, sink
        self.history: dict[str, list[float]] = {}
        self.done = False
        self.failure: NonFiniteLoss | None = None
        self._stopper = early_stopping(spec, model)
        self._untested: Record | None = None  # the last epoch, waiting for its test_* values

    @property
    def awaits_test(self) -> bool:
        """True between the last epoch's :meth:`end_epoch` and :meth:`join_test`."""
        return self._untested is not None

    def end_epoch(self, epoch: int, logs: Mapping[str, float]) -> None:
        """Apply rules 1–3 (and 5, unless the test split is still to come) to ``epoch``'s logs."""
        if self.done:
            raise RuntimeError(f"seed {self.seed}: epoch {epoch} after the run's last")
        logs = dict(logs)
        if not math.isfinite(logs["loss"]):
            self.done = True
            self._record(Record(epoch, logs))
            self.failure = NonFiniteLoss(f"loss became {logs['loss']} in epoch {epoch}")
            return
        if self._stopper is not None:
            self._stopper.on_epoch_end(epoch - 1, logs)  # Keras counts epochs from 0
        if epoch == self.spec.epochs or self.model.stop_training:
            self.done = True
            if self._stopper is not None:
                self._stopper.on_train_end()  # puts the best weights back when asked to
            if self.spec.evaluate_test:
                self._untested = Record(epoch, logs)
                return
        self._record(Record(epoch, logs))
        if self.done:
            self._trained(epoch)

    def join_test(self, tested: Mapping[str, float]) -> None:
        """Record the last epoch with the test split's values as ``test_*`` (rule 4)."""
        if self._untested is None:
            raise RuntimeError(f"seed {self.seed}: no epoch waits for the test split")
        epoch, logs = self._untested
        self._untested = None
        self._record(Record(epoch, {**logs, **{f"test_{k}": float(v) for k, v in tested.items()}}))
        self._trained(epoch)

    def _trained(self, last: int) -> None:
        """Rule 6: hand the finished run's model to the sink, with the epoch of its weights
        (the best epoch when early stopping restored it)."""
        stopper = self._stopper
        restored = (stopper is not None and stopper.restore_best_weights
                    and stopper.best_weights is not None)
        self.sink.run_trained(self.seed, stopper.best_epoch + 1 if restored else last, self.model)

    def _record(self, record: Record) -> None:
        for key, value in record.logs.items():
            self.history.setdefault(key, []).append(value)
        self.sink.run_epoch(self.seed, record.epoch, record.logs)


def end_epoch(runs: Sequence[RunEpochs], epoch: int, logs: Sequence[Mapping[str, float]],
              evaluate_test: Callable[[], Sequence[Mapping[str, Any]]]) -> None:
    """Apply the epoch rules to ``epoch`` of runs trained together (one run when solo).

    ``logs[i]`` is ``runs[i]``'s; runs already :attr:`~RunEpochs.done` are skipped.
    ``evaluate_test()`` returns every run's metrics on its test split with its model's current
    weights (``[i]`` for ``runs[i]``); it is called once, and only when some run's last epoch
    waits for them. Failures are left in :attr:`RunEpochs.failure` for the trainer to act on.
    """
    for run, run_logs in zip(runs, logs, strict=True):
        if not run.done:
            run.end_epoch(epoch, run_logs)
    if any(run.awaits_test for run in runs):
        tested = evaluate_test()
        for run, values in zip(runs, tested, strict=True):
            if run.awaits_test:
                run.join_test(values)
