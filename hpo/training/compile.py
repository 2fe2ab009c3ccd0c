"""Compiling a Keras model with a :class:`~hpo.config.TrainSpec`'s optimizer, loss and metrics.

The names a sweep may use are :mod:`hpo.config`'s (Keras' own names, kept there so that
validating a sweep imports no Keras).
"""

from __future__ import annotations

from hpo._imports import LazyImport
from hpo.config import OPTIMIZERS, TrainSpec

keras = LazyImport("keras")


def compile_model(
    model: keras.Model,
    train: TrainSpec,
    steps_per_execution: int = 1,
    outputs: list[str] | None = None,
) -> keras.Model:
    """Compile ``model`` with the optimizer, learning rate, loss and metrics of ``train``.

    With ``outputs`` (a packed model's output names) every output gets the loss and metrics, and
    a ``replica_loss`` metric: Keras' own per-output loss tracker weights batches by their static
    size, which TensorFlow graphs do not know, so a partial last batch would count as a full one.

    Example:
        >>> from hpo.models.mlp import build
        >>> from hpo.config import TrainSpec
        >>> m = compile_model(build((4,), 3), TrainSpec(optimizer="sgd", learning_rate=0.1))
        >>> type(m.optimizer).__name__, round(float(m.optimizer.learning_rate), 6)
        ('SGD', 0.1)
    """
    optimizer = getattr(keras.optimizers, OPTIMIZERS[train.optimizer])(
        learning_rate=train.learning_rate
    )
    loss, metrics = train.loss, list(train.metrics)
    if outputs is not None:
        loss = {name: train.loss for name in outputs}
        metrics = {
            name: [keras.metrics.MeanMetricWrapper(keras.losses.get(train.loss),
                                                   name="replica_loss"), *train.metrics]
            for name in outputs
        }
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        steps_per_execution=steps_per_execution,
    )
    return model
