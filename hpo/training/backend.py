"""The few things that depend on the Keras backend: seeding and determinism.

TensorFlow is imported only when it is the backend, so hpo runs where only JAX is installed.
"""

from __future__ import annotations

import functools


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and the backend (weights, dropout) for one run."""
    import keras

    enable_determinism()
    keras.utils.set_random_seed(seed)


@functools.cache
def enable_determinism() -> None:
    """Make the same seed give the same history on the same machine."""
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
