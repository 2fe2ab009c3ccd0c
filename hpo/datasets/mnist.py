"""MNIST: 60,000 + 10,000 grey 28×28 digits, pixels scaled to [0, 1]."""

from __future__ import annotations

import numpy as np

from hpo._imports import LazyImport
from hpo.datasets import offline_file

keras = LazyImport("keras")


def load() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``$HPO_DATA_DIR/mnist.npz`` (Keras' format), else ``keras.datasets.mnist``."""
    path = offline_file("mnist.npz")
    if path is not None:
        with np.load(path) as f:
            (x_train, y_train), (x_test, y_test) = (
                (f["x_train"], f["y_train"]),
                (f["x_test"], f["y_test"]),
            )
    else:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    return ((scale_pixels(x_train), y_train.astype("int64")),
            (scale_pixels(x_test), y_test.astype("int64")))


def scale_pixels(x: np.ndarray) -> np.ndarray:
    """uint8 pixels → float32 in [0, 1]."""
    return (x.astype("float32") / 255.0).astype("float32")
