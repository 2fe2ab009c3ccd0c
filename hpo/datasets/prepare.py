"""From a loader's arrays to what a run trains on: limits, validation split, target encoding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpo.errors import SweepError
from hpo.sweep import DataSpec

Arrays = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PreparedData:
    """Training, validation and test arrays; labels are integer classes 0..n_classes-1."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def prepare(arrays: Arrays, spec: DataSpec, seed: int | None = None) -> PreparedData:
    """Apply ``limit_train``/``limit_test`` (first N), ``shuffle`` and the validation choice.

    With ``spec.shuffle`` the (limited) training set is first permuted with
    ``default_rng(seed)``, as the keras-io FordA example shuffles before ``validation_split``.

    ``validation = "test"`` validates on the (limited) test split, as the assignment does; a
    fraction holds out the last part of the training set, as Keras' ``validation_split`` does.

    Example:
        >>> x = np.zeros((10, 2), "float32"); y = np.arange(10) % 3
        >>> d = prepare(((x, y), (x[:4], y[:4])), DataSpec("mine", validation=0.2))
        >>> len(d.x_train), len(d.x_val), d.n_classes
        (8, 2, 3)
    """
    try:
        (x_train, y_train), (x_test, y_test) = arrays
    except (TypeError, ValueError) as exc:
        raise SweepError(
            f"data.dataset = {spec.dataset!r}: the loader must return "
            "((x_train, y_train), (x_test, y_test))"
        ) from exc
    x_train, y_train, x_test, y_test = map(np.asarray, (x_train, y_train, x_test, y_test))
    y_train, y_test = _labels(spec, y_train), _labels(spec, y_test)
    if spec.limit_train:
        x_train, y_train = x_train[: spec.limit_train], y_train[: spec.limit_train]
    if spec.limit_test:
        x_test, y_test = x_test[: spec.limit_test], y_test[: spec.limit_test]
    if spec.shuffle:
        if seed is None:
            raise ValueError("data.shuffle needs the run's seed")
        order = np.random.default_rng(seed).permutation(len(x_train))
        x_train, y_train = x_train[order], y_train[order]
    if spec.validation == "test":
        x_val, y_val = x_test, y_test
    else:
        n_val = int(len(x_train) * spec.validation)
        if n_val == 0 or n_val == len(x_train):
            raise SweepError(
                f"data.validation = {spec.validation!r}: leaves no validation or no training "
                f"example of {len(x_train)}"
            )
        cut = len(x_train) - n_val
        x_train, y_train, x_val, y_val = x_train[:cut], y_train[:cut], x_train[cut:], y_train[cut:]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    return PreparedData(x_train, y_train, x_val, y_val, x_test, y_test, n_classes)


def _labels(spec: DataSpec, y: np.ndarray) -> np.ndarray:
    y = y.reshape(len(y), -1)
    if y.shape[1] != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise SweepError(
            f"data.dataset = {spec.dataset!r}: labels must be integer classes 0..n-1, "
            f"got dtype {y.dtype} shape {y.shape}"
        )
    return y[:, 0].astype("int64")


def encode_targets(y: np.ndarray, n_classes: int, sparse: bool) -> np.ndarray:
    """Integer labels for sparse losses, else one-hot float32 rows (e.g. for MSE)."""
    if sparse:
        return y
    return np.eye(n_classes, dtype="float32")[y]


class DataSource:
    """A loaded dataset that hands each seed its prepared data (the same, unless ``shuffle``)."""

    def __init__(self, arrays: Arrays, spec: DataSpec) -> None:
        self.arrays, self.spec = arrays, spec
        # Preparing once checks the arrays before any database is opened.
        self._base = prepare(arrays, spec, seed=0 if spec.shuffle else None)

    @property
    def n_classes(self) -> int:
        return self._base.n_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._base.input_shape

    def for_seed(self, seed: int) -> PreparedData:
        if not self.spec.shuffle:
            return self._base
        return prepare(self.arrays, self.spec, seed)
