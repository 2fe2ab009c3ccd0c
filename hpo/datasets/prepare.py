"""From a loader's arrays to what a run trains on: limits, validation split, target encoding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hpo.config import DataSpec
from hpo.errors import SweepError

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
        """The shape of one example (what the builder gets)."""
        return tuple(self.x_train.shape[1:])


def prepare(arrays: Arrays, spec: DataSpec, seed: int | None = None) -> PreparedData:
    """Apply ``limit_train``/``limit_test`` (first N), ``shuffle`` and the validation choice.

    ``validation = "test"`` validates on the (limited) test split, as the assignment does; a
    fraction holds out the last part of the training set, as Keras' ``validation_split`` does.
    With ``spec.shuffle`` the training set is first permuted with ``default_rng(seed)``, as the
    keras-io FordA example shuffles before ``validation_split``.

    Example:
        >>> x = np.zeros((10, 2), "float32"); y = np.arange(10) % 3
        >>> d = prepare(((x, y), (x[:4], y[:4])), DataSpec("mine", validation=0.2))
        >>> len(d.x_train), len(d.x_val), d.n_classes
        (8, 2, 3)
    """
    return DataSource(arrays, spec).for_seed(seed)


@dataclass(frozen=True)
class Split:
    """Which rows of :attr:`DataSource.x` a seed trains, validates and tests on."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


class DataSource:
    """A loaded dataset as one table (training rows, then test rows) and each seed's split.

    Every trainer takes a seed's examples from here, so packed and solo runs see the same data.
    """

    def __init__(self, arrays: Arrays, spec: DataSpec) -> None:
        try:
            (x_train, y_train), (x_test, y_test) = arrays
        except (TypeError, ValueError) as exc:
            raise SweepError(
                f"data.dataset = {spec.dataset!r}: the loader must return "
                "((x_train, y_train), (x_test, y_test))"
            ) from exc
        x_train, y_train, x_test, y_test = map(np.asarray, (x_train, y_train, x_test, y_test))
        y_train, y_test = _labels(spec, y_train), _labels(spec, y_test)
        # The classes of the whole dataset, not of the limited slices: 20 examples without a 9
        # are still a 10-class problem (the output layer, one-hot targets, the metrics).
        self.n_classes = int(max(y_train.max(), y_test.max())) + 1
        if spec.limit_train:
            x_train, y_train = x_train[: spec.limit_train], y_train[: spec.limit_train]
        if spec.limit_test:
            x_test, y_test = x_test[: spec.limit_test], y_test[: spec.limit_test]
        if x_train.shape[1:] != x_test.shape[1:]:
            raise SweepError(
                f"data.dataset = {spec.dataset!r}: training examples {x_train.shape[1:]} and "
                f"test examples {x_test.shape[1:]} differ in shape"
            )
        self.spec = spec
        self.n_train, self.n_test = len(x_train), len(x_test)
        self.x = np.concatenate([x_train, x_test])
        self.y = np.concatenate([y_train, y_test])
        self.input_shape = tuple(self.x.shape[1:])
        if spec.validation != "test":
            n_val = int(self.n_train * spec.validation)
            if n_val == 0 or n_val == self.n_train:
                raise SweepError(
                    f"data.validation = {spec.validation!r}: leaves no validation or no "
                    f"training example of {self.n_train}"
                )
        self._cached: PreparedData | None = None

    def split(self, seed: int | None = None) -> Split:
        """Row indices of ``seed``'s training, validation and test examples."""
        rows = np.arange(self.n_train)
        if self.spec.shuffle:
            if seed is None:
                raise ValueError("data.shuffle needs the run's seed")
            rows = np.random.default_rng(seed).permutation(self.n_train)
        test = self.n_train + np.arange(self.n_test)
        if self.spec.validation == "test":
            return Split(rows, test, test)
        cut = self.n_train - int(self.n_train * self.spec.validation)
        return Split(rows[:cut], rows[cut:], test)

    def for_seed(self, seed: int | None = None) -> PreparedData:
        """``seed``'s examples as arrays (computed once when they do not depend on the seed)."""
        if self._cached is not None:
            return self._cached
        split = self.split(seed)
        test = (self.x[split.test], self.y[split.test])
        val = test if split.val is split.test else (self.x[split.val], self.y[split.val])
        data = PreparedData(self.x[split.train], self.y[split.train], *val, *test, self.n_classes)
        if not self.spec.shuffle:
            self._cached = data
        return data


def _labels(spec: DataSpec, y: np.ndarray) -> np.ndarray:
    if y.ndim == 0 or len(y) == 0:
        raise SweepError(f"data.dataset = {spec.dataset!r}: the loader returned no examples")
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
