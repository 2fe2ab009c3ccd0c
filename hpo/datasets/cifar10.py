"""CIFAR-10: 50,000 + 10,000 colour 32×32 images of 10 classes, pixels scaled to [0, 1]."""

from __future__ import annotations

import numpy as np

from hpo._imports import LazyImport
from hpo.datasets import offline_file
from hpo.datasets.mnist import scale_pixels

keras = LazyImport("keras")


def load() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``$HPO_DATA_DIR/cifar10.npz`` (keys x_train, y_train, x_test, y_test, as Keras returns
    them: uint8 images (N, 32, 32, 3), labels (N, 1)) when HPO_DATA_DIR is set, else
    ``keras.datasets.cifar10.load_data()``. Labels come back flattened to (N,)."""
    path = offline_file("cifar10.npz")
    if path is not None:
        with np.load(path) as f:
            x_train, y_train, x_test, y_test = (f[k] for k in
                                                ("x_train", "y_train", "x_test", "y_test"))
    else:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    return ((scale_pixels(x_train), y_train.reshape(-1).astype("int64")),
            (scale_pixels(x_test), y_test.reshape(-1).astype("int64")))
