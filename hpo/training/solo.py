"""The plain trainer: one seeded run at a time, one Keras ``fit`` per epoch.

Each epoch trains on the training set in the order :func:`hpo.stats.epoch_order` gives for
(seed, epoch), so a run's data order is a documented function of its seed rather than of Keras'
internal shuffling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hpo.config import TrainSpec, uses_sparse_targets
from hpo.datasets.prepare import DataSource, encode_targets
from hpo.errors import LeaseLost
from hpo.stats import epoch_order
from hpo.training.backend import seed_everything
from hpo.training.compile import compile_model

# Steps run per call into the backend: fewer Python round trips, the same arithmetic.
STEPS_PER_EXECUTION = 32
# Evaluation batch size: metrics are means over all examples, so it changes only float rounding,
# and large batches make validation several times cheaper than at the training batch size.
EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TrainingJob:
    """One configuration: what to build, with which parameters, trained how, on what data."""

    build: Callable[..., Any]
    model_params: Mapping[str, Any]
    train: TrainSpec
    data: DataSource


class RunSink(Protocol):
    """Where a trainer reports; the runner implements it (recorder + progress display).

    After ``epoch_ended`` the trainer checks ``stopping`` (a pruned trial): if set it ends its
    runs there and starts no more. Any method may raise :class:`~hpo.errors.LeaseLost` (this
    worker no longer holds the trial): trainers let it through rather than failing the run.
    """

    stopping: bool

    def run_started(self, seed: int) -> None: ...

    def epoch_finished(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None: ...

    def epoch_ended(self, epoch: int) -> None: ...

    def run_finished(self, seed: int, error: str | None) -> None: ...


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


def train_seeds(job: TrainingJob, seeds: Sequence[int], sink: RunSink) -> dict[int, dict]:
    """Train ``job`` once per seed, one after another; return the histories of completed runs.

    A run that raises is reported finished with its error and left out of the result.
    """
    histories = {}
    for seed in seeds:
        if sink.stopping:
            break
        sink.run_started(seed)
        try:
            histories[seed] = train_one(job, seed, sink)
        except LeaseLost:  # the sink's, not the run's: this worker no longer holds the trial
            raise
        except Exception as exc:  # a failed run is data, not the end of the sweep
            sink.run_finished(seed, f"{type(exc).__name__}: {exc}")
        else:
            sink.run_finished(seed, None)
    return histories


def early_stopping(train: TrainSpec, model):
    """Keras' ``EarlyStopping`` for ``model``, started, or None when the sweep has none.

    hpo calls its hooks itself, once per epoch, so that its state spans the per-epoch ``fit``
    calls (and, packed, follows one replica). The mode is explicit: a replica's sub-model is not
    compiled, so Keras could not infer it.
    """
    if not train.early_stopping:
        return None
    import keras

    settings = dict(train.early_stopping)
    metric = settings["monitor"].removeprefix("val_")
    settings.setdefault("mode", "min" if metric in ("loss", "mse", "mae") else "max")
    stopper = keras.callbacks.EarlyStopping(**settings)
    stopper.set_model(model)
    stopper.on_train_begin()
    return stopper


def train_one(job: TrainingJob, seed: int, sink: RunSink) -> dict[str, list[float]]:
    """Build, compile and fit one seeded run; report each epoch; return its history.

    With ``early_stopping`` Keras' own ``EarlyStopping`` callback judges every epoch (its state
    spans the per-epoch ``fit`` calls); with ``evaluate_test`` the final (or restored best)
    weights are evaluated on the test split and ``test_*`` values join the last epoch's record.
    """
    import keras

    keras.backend.clear_session()  # a fresh graph per run: memory stays flat over a sweep
    seed_everything(seed)
    data = job.data.for_seed(seed)
    model = job.build(data.input_shape, data.n_classes, **job.model_params)
    if not isinstance(model, keras.Model):
        raise TypeError(f"the builder returned {type(model).__name__}, not a keras.Model")
    steps = -(-len(data.x_train) // job.train.batch_size)
    compile_model(model, job.train, steps_per_execution=min(STEPS_PER_EXECUTION, steps))
    sparse = uses_sparse_targets(job.train.loss)
    y_train = encode_targets(data.y_train, data.n_classes, sparse)
    y_val = encode_targets(data.y_val, data.n_classes, sparse)
    eval_batch = max(job.train.batch_size, EVAL_BATCH_SIZE)
    stopper = early_stopping(job.train, model)
    history: dict[str, list[float]] = {}
    logs: dict[str, float] = {}
    for epoch in range(job.train.epochs):
        order = epoch_order(seed, epoch, len(data.x_train))
        fitted = model.fit(
            data.x_train[order],
            y_train[order],
            batch_size=job.train.batch_size,
            epochs=epoch + 1,
            initial_epoch=epoch,
            validation_data=(data.x_val, y_val),
            validation_batch_size=eval_batch,
            shuffle=False,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN()],
        )
        logs = {name: float(np.asarray(values[-1])) for name, values in fitted.history.items()}
        if not math.isfinite(logs["loss"]):
            sink.epoch_finished(seed, epoch + 1, logs)
            raise NonFiniteLoss(f"loss became {logs['loss']} in epoch {epoch + 1}")
        if stopper is not None:
            stopper.on_epoch_end(epoch, logs)
        last = epoch + 1 == job.train.epochs or model.stop_training
        if last:
            if stopper is not None:
                stopper.on_train_end()  # restores the best weights when asked to
            if job.train.evaluate_test:
                y_test = encode_targets(data.y_test, data.n_classes, sparse)
                tested = model.evaluate(data.x_test, y_test, batch_size=eval_batch, verbose=0,
                                        return_dict=True)
                logs.update({f"test_{k}": float(np.asarray(v)) for k, v in tested.items()})
        for name, value in logs.items():
            history.setdefault(name, []).append(value)
        sink.epoch_finished(seed, epoch + 1, logs)
        sink.epoch_ended(epoch + 1)
        if last or sink.stopping:
            break
    return history
