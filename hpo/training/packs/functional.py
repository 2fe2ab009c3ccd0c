"""The pack for any backend and model: the replicas as branches of one functional Keras model.

Its input is a (batch, R) array of example rows; a non-trainable layer holding every example
gathers each replica's batch, and output ``r{i}`` is replica i on its column. The loss is the sum
of the outputs' losses, so each replica's gradient is exactly its own; ``fit`` trains it with the
solo runs' kernels. Used where no fast path applies (convolutions; max pooling on TensorFlow;
backends without a fast path) and where one cannot compile.
"""

from __future__ import annotations

import numpy as np

from hpo._imports import LazyImport
from hpo.config import TrainSpec
from hpo.training.compile import compile_model
from hpo.training.job import EVAL_BATCH_SIZE, STEPS_PER_EXECUTION

keras = LazyImport("keras")


class FunctionalPack:
    """A :class:`~hpo.training.packs.base.Pack`: one functional Keras model, trained by ``fit``.

    ``models``, ``x``, ``y`` (targets, encoded for the loss) and ``val_rows`` ((n_val, R)) as
    :func:`hpo.training.packs.make_pack` passes them; ``n_train`` sets the steps per execution.
    """

    def __init__(self, models: list, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 spec: TrainSpec, n_train: int) -> None:
        self.models, self.y, self.spec = models, y, spec
        self.names = [f"r{i}" for i in range(len(models))]
        rows = keras.Input(shape=(len(models),), dtype="int32", name="rows")
        table = _example_table(x)
        outputs = {name: keras.layers.Identity(name=name)(model(table(rows[:, i])))
                   for i, (name, model) in enumerate(zip(self.names, models, strict=True))}
        self.model = keras.Model(rows, outputs, name="packed")
        steps = -(-n_train // spec.batch_size)
        compile_model(self.model, spec, steps_per_execution=min(STEPS_PER_EXECUTION, steps),
                      outputs=self.names)
        self.val = (val_rows, self._targets(val_rows))
        self.eval_batch = max(spec.batch_size, EVAL_BATCH_SIZE)

    def _targets(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: self.y[rows[:, i]] for i, name in enumerate(self.names)}

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """One ``fit`` epoch of the packed model on ``rows``, validated; logs per replica."""
        fitted = self.model.fit(rows, self._targets(rows), batch_size=self.spec.batch_size,
                                epochs=1, validation_data=self.val,
                                validation_batch_size=self.eval_batch, shuffle=False, verbose=0)
        logs = {k: float(np.asarray(v[-1])) for k, v in fitted.history.items()}
        return [_replica_logs(logs, name) for name in self.names]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """The packed model's ``evaluate`` on ``rows``; metrics per replica."""
        tested = self.model.evaluate(rows, self._targets(rows), batch_size=self.eval_batch,
                                     verbose=0, return_dict=True)
        return [_replica_logs(tested, name) for name in self.names]

    def close(self) -> None:
        """Nothing to release."""


def _example_table(values: np.ndarray) -> keras.layers.Layer:
    """A Keras layer holding every example as one non-trainable weight, gathered by row."""

    class ExampleTable(keras.layers.Layer):
        def __init__(self) -> None:
            super().__init__(trainable=False, name="examples")
            self.values = self.add_weight(shape=values.shape, initializer="zeros",
                                          dtype=str(values.dtype), trainable=False, name="values")
            self.values.assign(values)

        def call(self, rows):
            return keras.ops.take(self.values, rows, axis=0)

    return ExampleTable()


def _replica_logs(logs: dict[str, float], name: str) -> dict[str, float]:
    """Keras' per-output keys (``r3_replica_loss``, ``val_r3_accuracy``) → a solo run's keys.

    ``r3_loss`` (Keras' per-output loss tracker) is left out for ``r3_replica_loss``: see
    :func:`hpo.training.compile.compile_model`.

    Example:
        >>> _replica_logs({"loss": 3.0, "r1_loss": 2.0, "r1_replica_loss": 1.5,
        ...                "val_r1_accuracy": 0.5, "r0_accuracy": 0.25}, "r1")
        {'loss': 1.5, 'val_accuracy': 0.5}
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
