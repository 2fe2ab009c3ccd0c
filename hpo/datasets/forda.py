"""FordA (UCR archive): engine-noise series of 500 steps, 2 classes, read as keras-io does.

Rows of the TSV files are "label, 500 floats"; x becomes (N, 500, 1) and the labels -1/1 become 0/1.
The example also shuffles the training set; in hpo that is ``[data] shuffle = true`` (with the
run's seed) so that every seed gets its own split under ``validation = 0.2``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hpo._imports import LazyImport
from hpo.datasets import offline_file

keras = LazyImport("keras")

URL = "https://raw.githubusercontent.com/hfawaz/cd-diagram/master/FordA/"
FILES = ("FordA_TRAIN.tsv", "FordA_TEST.tsv")


def load() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``$HPO_DATA_DIR/FordA/FordA_{TRAIN,TEST}.tsv`` when HPO_DATA_DIR is set, else downloaded
    once from the example's URL and cached by ``keras.utils.get_file``."""
    train, test = (read_ucr(_path(name)) for name in FILES)
    return train, test


def read_ucr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One UCR TSV file → x (N, length, 1) float32, y (N,) int64 with -1 mapped to 0."""
    rows = np.loadtxt(path, delimiter="\t", dtype="float64", ndmin=2)
    x = rows[:, 1:].astype("float32").reshape(len(rows), -1, 1)
    y = rows[:, 0].astype("int64")
    y[y == -1] = 0
    return x, y


def _path(name: str) -> Path:
    path = offline_file("FordA", name)
    if path is not None:
        return path
    return Path(keras.utils.get_file(name, URL + name, cache_subdir="datasets/FordA"))
