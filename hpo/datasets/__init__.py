"""Dataset loaders: ``load() -> ((x_train, y_train), (x_test, y_test))`` of numpy arrays.

This is the convention of ``keras.datasets``: ``x`` arrays of examples (any shape after the first
axis), ``y`` arrays of integer class labels 0..n_classes-1. hpo applies ``limit_*``, the validation
choice and the target encoding (see :mod:`hpo.datasets.prepare`).

Loaders read ``$HPO_DATA_DIR`` first (see :func:`data_dir`) and fall back to the real download.

Example:
    >>> from hpo.datasets import loaders
    >>> "mnist" in loaders.names()
    True
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpo.registry import Registry

loaders = Registry("data.dataset")
loaders.register("mnist", "hpo.datasets.mnist:load")
loaders.register("cifar10", "hpo.datasets.cifar10:load")
loaders.register("forda", "hpo.datasets.forda:load")


def register_dataset(name: str, load: Callable[..., Any] | str) -> None:
    """Make ``load`` usable as ``[data] dataset = name`` in sweep files run from this process."""
    loaders.register(name, load)


def data_dir() -> Path | None:
    """The offline data directory ``$HPO_DATA_DIR``, or None when unset."""
    value = os.environ.get("HPO_DATA_DIR")
    return Path(value) if value else None
