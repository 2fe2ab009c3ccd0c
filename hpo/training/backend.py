"""The few things that depend on the Keras backend: seeding and determinism.

TensorFlow is imported only when it is the backend, so hpo runs where only JAX is installed.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import sys

from hpo._imports import LazyImport

keras = LazyImport("keras")
tf = LazyImport("tensorflow")  # used only when TensorFlow is the backend


def import_keras_quietly() -> None:
    """Import Keras (and TensorFlow, if it is the backend) with file descriptor 2 silenced.

    TensorFlow writes start-up lines (absl, oneDNN) straight to fd 2 before any Python logging
    setting applies; the CLI promises one-line errors. Python exceptions are unaffected.
    """
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        importlib.import_module("keras")  # now, while fd 2 is silenced: not at first use
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)
    # TensorFlow's Python warnings (tf.function retracing: every run is a new model, by design).
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and the backend (weights, dropout) for one run."""
    enable_determinism()
    if keras.backend.backend() == "tensorflow" or "tensorflow" in sys.modules:
        keras.utils.set_random_seed(seed)
        return
    # Keras also seeds TensorFlow whenever it is installed, importing it (seconds) into a JAX or
    # torch process that never uses it; a None entry makes that import fail, which Keras skips.
    sys.modules["tensorflow"] = None
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del sys.modules["tensorflow"]


@functools.cache
def enable_determinism() -> None:
    """Make the same seed give the same history on the same machine."""
    if keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()
