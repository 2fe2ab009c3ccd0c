"""The packed trainer: a trial's seeded runs trained together, as replicas of the user's model.

Replica r is the user's model built under ``set_random_seed(seeds[r])`` (so its initial weights
and its dropout seed are the solo run's), fed from one table of examples by an in-graph gather of
its own per-epoch order (the solo run's order, :func:`hpo.stats.epoch_order`). Each replica's
gradient is exactly its own and optimizers update element-wise, so each replica also keeps its own
optimizer state; each replica's metrics become its run's history.

How the replicas run together is a :class:`Pack`. For convolution-free replicas a whole epoch is
one XLA-compiled call of Keras' own train steps: on TensorFlow each replica's ``train_step`` in a
compiled loop (:mod:`hpo.training.tf_pack`), on JAX one replica's ``train_step`` vmapped over the
replicas' stacked states (:mod:`hpo.training.jax_pack`, replicas of one architecture). Otherwise
one functional Keras model with a branch per replica whose loss is the sum of theirs, trained by
``fit`` (:class:`FunctionalPack`).

Per-replica early stopping runs Keras' ``EarlyStopping`` on each replica's model: a stopped
replica's history ends and its kept weights are put back before any test evaluation, while the
pack trains on as long as one replica does. A replica whose loss becomes NaN fails alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from hpo.config import uses_sparse_targets
from hpo.datasets.prepare import encode_targets
from hpo.errors import LeaseLost
from hpo.stats import epoch_order
from hpo.training.backend import seed_everything
from hpo.training.compile import compile_model
from hpo.training.solo import (
    EVAL_BATCH_SIZE,
    STEPS_PER_EXECUTION,
    NonFiniteLoss,
    RunSink,
    TrainingJob,
    early_stopping,
)

# A packed model keeps this much memory for weights, gradients and optimizer slots at most;
# more seeds than fit are trained in several packs.
PACK_MEMORY_BYTES = 2 * 1024**3
_BYTES_PER_PARAMETER = 4 * 4  # float32 weight, gradient, two optimizer slots (Adam)


def pack_size(pack: bool | int, repeats: int, n_params: int) -> int:
    """How many seeds to train in one packed model.

    Example:
        >>> pack_size(True, 10, 25_450), pack_size(4, 10, 25_450), pack_size(False, 10, 25_450)
        (10, 4, 1)
    """
    if pack is False:
        return 1
    if pack is True:
        fits = max(1, PACK_MEMORY_BYTES // max(1, n_params * _BYTES_PER_PARAMETER))
        return int(min(repeats, fits))
    return int(min(pack, repeats))


def train_packed(job: TrainingJob, seeds: Sequence[int], sink: RunSink) -> dict[int, dict]:
    """Train one replica per seed in one model; report as solo runs report.

    Returns the histories of the replicas that completed; a failed replica is reported finished
    with its error. An error that breaks the packed model fails every replica in it.
    """
    for seed in seeds:
        sink.run_started(seed)
    try:
        histories, errors = _train(job, list(seeds), sink)
    except LeaseLost:  # the sink's, not the runs': this worker no longer holds the trial
        raise
    except Exception as exc:  # the whole pack failed: each of its runs records why
        for seed in seeds:
            sink.run_finished(seed, f"{type(exc).__name__}: {exc}")
        return {}
    for seed in seeds:
        sink.run_finished(seed, errors.get(seed))
    return {seed: h for seed, h in histories.items() if seed not in errors}


def build_replicas(job: TrainingJob, seeds: Sequence[int]) -> list:
    """One model per seed, each built right after ``set_random_seed(seed)`` as its solo run is."""
    import keras

    keras.backend.clear_session()
    source, replicas = job.data, []
    for i, seed in enumerate(seeds):
        seed_everything(seed)  # the solo run's initial weights and dropout seed
        model = job.build(source.input_shape, source.n_classes, **job.model_params)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the builder returned {type(model).__name__}, not a keras.Model")
        model.name = f"replica_{i}"  # builders name their models; names must be unique here
        model.stop_training = False  # what EarlyStopping sets on the model it watches
        replicas.append(model)
    return replicas


def epoch_rows(seeds: Sequence[int], splits: Sequence, epoch: int) -> np.ndarray:
    """(n_train, R) example rows: column i is seed i's training order in ``epoch``."""
    columns = [split.train[epoch_order(seed, epoch, len(split.train))]
               for seed, split in zip(seeds, splits, strict=True)]
    return np.stack(columns, axis=1).astype("int32")


class Pack(Protocol):
    """R replica models trained together; the backend-specific part of packing.

    ``models[i]`` holds replica i's current weights after each epoch (EarlyStopping watches and
    restores it); rows are (n, R) arrays of example rows, column i for replica i.
    """

    models: list

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch, validate; each replica's logs as its solo ``fit`` reports them."""
        ...

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` with its model's current weights."""
        ...

    def close(self) -> None: ...


class FastPathUnavailable(RuntimeError):
    """XLA cannot compile these replicas (an op it lacks); raised before anything was trained."""


def make_pack(job: TrainingJob, seeds: Sequence[int], splits: Sequence,
              fast: bool = True) -> Pack:
    """The backend's fast path where it applies (and ``fast``), else one functional Keras model.

    TensorFlow: :class:`hpo.training.tf_pack.TfPack`; JAX: :class:`hpo.training.jax_pack.JaxPack`;
    both for convolution-free replicas (JAX: of one architecture), see their ``applies``.
    """
    import keras

    train = job.train
    source = job.data
    y = encode_targets(source.y, source.n_classes, uses_sparse_targets(train.loss))
    x = source.x.astype("float32", copy=False)
    val_rows = np.stack([s.val for s in splits], axis=1).astype("int32")
    models = build_replicas(job, seeds)
    if fast and keras.backend.backend() == "tensorflow":
        from hpo.training import tf_pack

        if tf_pack.applies(models):
            prepare_replicas(models, x, y, train)
            return tf_pack.TfPack(models, x, y, val_rows, train)
    if fast and keras.backend.backend() == "jax":
        from hpo.training import jax_pack

        if jax_pack.applies(models):
            prepare_replicas(models, x, y, train)
            return jax_pack.JaxPack(models, x, y, val_rows, train)
    return FunctionalPack(models, x, y, val_rows, train, len(splits[0].train))


def prepare_replicas(models: Sequence, x: np.ndarray, y: np.ndarray, train) -> None:
    """Compile each replica and create its optimizer and metric variables, as ``fit`` does first.

    A fast path's compiled epoch updates these variables; they must exist before it is traced.
    ``Model._symbolic_build`` is private Keras API: Keras 3 has no public way to build the
    optimizer and compiled metrics without training a step.
    """
    for model in models:
        compile_model(model, train)
        model._symbolic_build(data_batch=(x[: train.batch_size], y[: train.batch_size], None))


def split_batches(rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, R) rows → ((steps, R, batch) full batches, (R, rest) last batch or None).

    Example:
        >>> full, tail = split_batches(np.arange(10).reshape(5, 2), 2)
        >>> full.shape, tail.tolist()
        ((2, 2, 2), [[8], [9]])
    """
    n, replicas = rows.shape
    steps = n // batch_size
    full = rows[: steps * batch_size].reshape(steps, batch_size, replicas).transpose(0, 2, 1)
    tail = rows[steps * batch_size :].T if n % batch_size else None
    return np.ascontiguousarray(full), None if tail is None else np.ascontiguousarray(tail)


def replica_groups(replicas: int, parallel: int) -> list[list[int]]:
    """Split replica indices into ``parallel`` contiguous groups of near-equal size.

    A fast path runs one group per CPU core, each from its own thread: XLA runs steps this small
    on one core.

    Example:
        >>> replica_groups(10, 2), replica_groups(3, 2), replica_groups(2, 4)
        ([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], [[0, 1], [2]], [[0], [1]])
    """
    parallel = max(1, min(parallel, replicas))
    bounds = np.linspace(0, replicas, parallel + 1).round().astype(int)
    sizes = sorted(np.diff(bounds).tolist(), reverse=True)
    starts = np.cumsum([0, *sizes])
    return [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=False)]


def cpu_cores() -> int:
    """CPU cores this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def has_convolution(model) -> bool:
    """True when ``model`` (or a model nested in it) has a convolution layer.

    The fast paths leave convolutions to ``fit``: on JAX, XLA's CPU convolutions were several
    times slower inside a compiled epoch (benchmarks/PACKING.md).
    """
    import keras

    convolutions = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
                    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
                    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                    keras.layers.Conv3DTranspose)
    return any(isinstance(layer, convolutions) for layer in all_layers(model))


def all_layers(model) -> list:
    """``model`` and every layer in it, nested models' layers included."""
    nested = getattr(model, "layers", [])
    return [model, *(inner for layer in nested for inner in all_layers(layer))]


def _example_table(values: np.ndarray):
    """A Keras layer holding every example as one non-trainable weight, gathered by row."""
    import keras

    class ExampleTable(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(trainable=False, name="examples")
            self.values = self.add_weight(shape=values.shape, initializer="zeros",
                                          dtype=str(values.dtype), trainable=False, name="values")
            self.values.assign(values)

        def call(self, rows):
            return keras.ops.take(self.values, rows, axis=0)

    return ExampleTable()


class FunctionalPack:
    """Any backend: the replicas as branches of one functional Keras model, trained by ``fit``.

    Input: a (batch, R) array of example rows; output ``r{i}`` is replica i on its column. The
    loss is the sum of the outputs' losses, so each replica's gradient is exactly its own.
    """

    def __init__(self, models: list, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 train, n_train: int) -> None:
        import keras

        self.models, self.y, self.train = models, y, train
        self.names = [f"r{i}" for i in range(len(models))]
        rows = keras.Input(shape=(len(models),), dtype="int32", name="rows")
        table = _example_table(x)
        outputs = {name: keras.layers.Identity(name=name)(model(table(rows[:, i])))
                   for i, (name, model) in enumerate(zip(self.names, models, strict=True))}
        self.model = keras.Model(rows, outputs, name="packed")
        steps = -(-n_train // train.batch_size)
        compile_model(self.model, train, steps_per_execution=min(STEPS_PER_EXECUTION, steps),
                      outputs=self.names)
        self.val = (val_rows, self._targets(val_rows))
        self.eval_batch = max(train.batch_size, EVAL_BATCH_SIZE)

    def _targets(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: self.y[rows[:, i]] for i, name in enumerate(self.names)}

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        fitted = self.model.fit(rows, self._targets(rows), batch_size=self.train.batch_size,
                                epochs=1, validation_data=self.val,
                                validation_batch_size=self.eval_batch, shuffle=False, verbose=0)
        logs = {k: float(np.asarray(v[-1])) for k, v in fitted.history.items()}
        return [_replica_logs(logs, name) for name in self.names]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        tested = self.model.evaluate(rows, self._targets(rows), batch_size=self.eval_batch,
                                     verbose=0, return_dict=True)
        return [_replica_logs(tested, name) for name in self.names]

    def close(self) -> None:
        pass


def _train(job: TrainingJob, seeds: list[int], sink: RunSink):
    train = job.train
    splits = [job.data.split(seed) for seed in seeds]
    pack = make_pack(job, seeds, splits)
    try:
        return _train_pack(pack, train, seeds, splits, sink)
    except FastPathUnavailable:  # nothing trained or recorded yet: start again without XLA
        pack.close()
        pack = make_pack(job, seeds, splits, fast=False)
        return _train_pack(pack, train, seeds, splits, sink)
    finally:
        pack.close()


def _train_pack(pack: Pack, train, seeds: list[int], splits: list, sink: RunSink):
    replicas = pack.models
    stoppers = [early_stopping(train, model) for model in replicas]
    active = set(range(len(seeds)))
    # Replicas that stopped, with evaluate_test: (last epoch, its logs, the weights they keep),
    # their last record waiting for the test_* values.
    deferred: dict[int, tuple[int, dict[str, float], list]] = {}
    histories: dict[int, dict[str, list[float]]] = {seed: {} for seed in seeds}
    errors: dict[int, str] = {}

    for epoch in range(train.epochs):
        logs = pack.fit_epoch(epoch_rows(seeds, splits, epoch))
        final_epoch = epoch + 1 == train.epochs
        for i in sorted(active):
            seed, replica_logs = seeds[i], logs[i]
            if not math.isfinite(replica_logs["loss"]):
                _record(histories[seed], sink, seed, epoch, replica_logs)
                errors[seed] = (f"{NonFiniteLoss.__name__}: loss became "
                                f"{replica_logs['loss']} in epoch {epoch + 1}")
                active.discard(i)
                continue
            stopper = stoppers[i]
            if stopper is not None:
                stopper.on_epoch_end(epoch, replica_logs)
            if final_epoch or replicas[i].stop_training:
                if stopper is not None:
                    stopper.on_train_end()  # restores this replica's best weights if asked
                active.discard(i)
                if train.evaluate_test:
                    deferred[i] = (epoch, replica_logs, replicas[i].get_weights())
                else:
                    _record(histories[seed], sink, seed, epoch, replica_logs)
            else:
                _record(histories[seed], sink, seed, epoch, replica_logs)
        sink.epoch_ended(epoch + 1)
        if not active or sink.stopping:
            break

    if train.evaluate_test:
        for i, (_, _, weights) in deferred.items():
            replicas[i].set_weights(weights)
        tested = pack.evaluate(np.stack([s.test for s in splits], axis=1).astype("int32"))
        for i, (epoch, logs, _) in deferred.items():
            tests = {f"test_{k}": v for k, v in tested[i].items()}
            _record(histories[seeds[i]], sink, seeds[i], epoch, {**logs, **tests})
    return histories, errors


def _replica_logs(logs: dict[str, float], name: str) -> dict[str, float]:
    """Keras' per-output keys (``r3_replica_loss``, ``val_r3_accuracy``) → a solo run's keys.

    ``r3_loss`` (Keras' per-output loss tracker) is left out for ``r3_replica_loss``: see
    :func:`hpo.training.compile.compile_model`.
    """
    out = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("val_") else ""
        bare = key.removeprefix("val_")
        if not bare.startswith(name + "_") or bare == f"{name}_loss":
            continue
        metric = bare.removeprefix(name + "_")
        out[prefix + ("loss" if metric == "replica_loss" else metric)] = float(np.asarray(value))
    return out


def _record(history: dict, sink: RunSink, seed: int, epoch: int, logs: dict[str, float]) -> None:
    for key, value in logs.items():
        history.setdefault(key, []).append(value)
    sink.epoch_finished(seed, epoch + 1, logs)
