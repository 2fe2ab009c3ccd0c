"""The packed trainer: a trial's seeded runs trained together, as replicas in one Keras model.

Replica r is the user's model built under ``set_random_seed(seeds[r])`` (so its initial weights
and its dropout seed are the solo run's), fed from one table of examples by an in-graph gather of
its own per-epoch order (the solo run's order, :func:`hpo.protocol.epoch_order`). The model's loss
is the sum of the replicas' losses, so each replica's gradient is exactly its own; optimizers
update element-wise, so each replica also keeps its own optimizer state. Keras reports each
output's loss and metrics, which become the replicas' histories.

Per-replica early stopping runs Keras' ``EarlyStopping`` on each replica's sub-model: a stopped
replica's history ends and its kept weights are put back before any test evaluation, while the
packed model trains on as long as one replica does. A replica whose loss becomes NaN fails alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hpo.datasets.prepare import encode_targets
from hpo.protocol import epoch_order
from hpo.training.backend import seed_everything
from hpo.training.compile import compile_model, uses_sparse_targets
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
    except Exception as exc:  # the whole pack failed: each of its runs records why
        for seed in seeds:
            sink.run_finished(seed, f"{type(exc).__name__}: {exc}")
        return {}
    for seed in seeds:
        sink.run_finished(seed, errors.get(seed))
    return {seed: h for seed, h in histories.items() if seed not in errors}


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


def build_packed(job: TrainingJob, seeds: Sequence[int]):
    """The packed model (input: a (batch, R) array of example rows) and its R replica models.

    Replica i is built right after ``set_random_seed(seeds[i])``, as the solo run is.
    """
    import keras

    keras.backend.clear_session()
    source = job.data
    names = [f"r{i}" for i in range(len(seeds))]
    rows = keras.Input(shape=(len(seeds),), dtype="int32", name="rows")
    table = _example_table(source.x.astype("float32", copy=False))
    replicas, outputs = [], {}
    for i, seed in enumerate(seeds):
        seed_everything(seed)  # the solo run's initial weights and dropout seed
        model = job.build(source.input_shape, source.n_classes, **job.model_params)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the builder returned {type(model).__name__}, not a keras.Model")
        model.name = f"replica_{i}"  # builders name their models; names must be unique here
        model.stop_training = False  # what EarlyStopping sets on the model it watches
        replicas.append(model)
        outputs[names[i]] = keras.layers.Identity(name=names[i])(model(table(rows[:, i])))
    return keras.Model(rows, outputs, name="packed"), replicas, names


def epoch_rows(seeds: Sequence[int], splits: Sequence, epoch: int) -> np.ndarray:
    """(n_train, R) example rows: column i is seed i's training order in ``epoch``."""
    columns = [split.train[epoch_order(seed, epoch, len(split.train))]
               for seed, split in zip(seeds, splits, strict=True)]
    return np.stack(columns, axis=1).astype("int32")


def _train(job: TrainingJob, seeds: list[int], sink: RunSink):
    source, train = job.data, job.train
    splits = [source.split(seed) for seed in seeds]
    sparse = uses_sparse_targets(train.loss)
    y_all = encode_targets(source.y, source.n_classes, sparse)
    packed, replicas, names = build_packed(job, seeds)
    steps = -(-len(splits[0].train) // train.batch_size)
    compile_model(packed, train, steps_per_execution=min(STEPS_PER_EXECUTION, steps),
                  outputs=names)

    def targets(index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: y_all[index[:, i]] for i, name in enumerate(names)}

    val_rows = np.stack([s.val for s in splits], axis=1).astype("int32")
    val_targets = targets(val_rows)
    eval_batch = max(train.batch_size, EVAL_BATCH_SIZE)
    stoppers = [early_stopping(train, model) for model in replicas]
    active = set(range(len(seeds)))
    # Replicas that stopped, with evaluate_test: (last epoch, its logs, the weights they keep),
    # their last record waiting for the test_* values.
    deferred: dict[int, tuple[int, dict[str, float], list]] = {}
    histories: dict[int, dict[str, list[float]]] = {seed: {} for seed in seeds}
    errors: dict[int, str] = {}

    for epoch in range(train.epochs):
        order = epoch_rows(seeds, splits, epoch)
        fitted = packed.fit(order, targets(order), batch_size=train.batch_size,
                            epochs=epoch + 1, initial_epoch=epoch,
                            validation_data=(val_rows, val_targets),
                            validation_batch_size=eval_batch, shuffle=False, verbose=0)
        logs = {k: float(np.asarray(v[-1])) for k, v in fitted.history.items()}
        final_epoch = epoch + 1 == train.epochs
        for i in sorted(active):
            seed, replica_logs = seeds[i], _replica_logs(logs, names[i])
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
        test_rows = np.stack([s.test for s in splits], axis=1).astype("int32")
        tested = packed.evaluate(test_rows, targets(test_rows), batch_size=eval_batch,
                                 verbose=0, return_dict=True)
        for i, (epoch, logs, _) in deferred.items():
            tests = {f"test_{k}": v for k, v in _replica_logs(tested, names[i]).items()}
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
