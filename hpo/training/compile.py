"""Optimizer, loss and metric names that sweep files may use, and compiling a model with them.

The names are Keras' own; they live here (not imported from Keras) so that validating a sweep file
does not import Keras or TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

    from hpo.sweep import TrainSpec

OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
}
# Losses that take integer class labels; every other loss gets one-hot targets (e.g. the
# assignment's MSE on one-hot vectors).
SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})
LOSSES = SPARSE_LOSSES | {
    "categorical_crossentropy",
    "binary_crossentropy",
    "mse",
    "mean_squared_error",
    "mae",
    "mean_absolute_error",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "huber",
    "kl_divergence",
    "poisson",
}
# Metrics that need integer labels, metrics that need one-hot targets, and those that take either.
SPARSE_METRICS = frozenset({"sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"})
ONE_HOT_METRICS = frozenset({"categorical_accuracy", "top_k_categorical_accuracy", "auc",
                             "precision", "recall", "mse", "mae"})
METRICS = SPARSE_METRICS | ONE_HOT_METRICS | {"accuracy"}


def uses_sparse_targets(loss: str) -> bool:
    """True when ``loss`` takes integer labels rather than one-hot vectors."""
    return loss in SPARSE_LOSSES


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
        >>> from hpo.sweep import TrainSpec
        >>> m = compile_model(build((4,), 3), TrainSpec(optimizer="sgd", learning_rate=0.1))
        >>> type(m.optimizer).__name__, round(float(m.optimizer.learning_rate), 6)
        ('SGD', 0.1)
    """
    import keras

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
