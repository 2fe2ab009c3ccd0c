"""The CIFAR-10 loader on a small file in Keras' exact format, written by the test."""

from __future__ import annotations

import numpy as np

from hpo.datasets.cifar10 import load

from conftest import write_cifar10


def test_cifar10_from_the_data_dir(tmp_path, monkeypatch):
    raw = write_cifar10(tmp_path)
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    (x_train, y_train), (x_test, y_test) = load()
    assert x_train.shape == (120, 32, 32, 3) and x_test.shape == (40, 32, 32, 3)
    assert x_train.dtype == np.float32
    assert np.allclose(x_train * 255.0, raw["x_train"])
    assert y_train.shape == (120,) and y_test.shape == (40,)  # flattened from (N, 1)
    assert y_train.tolist() == raw["y_train"].reshape(-1).tolist()
