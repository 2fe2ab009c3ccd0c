"""Dataset loaders: ``load() -> ((x_train, y_train), (x_test, y_test))`` of numpy arrays.

This is the convention of ``keras.datasets``: ``x`` arrays of examples (any shape after the first
axis), ``y`` arrays of integer class labels 0..n_classes-1. hpo applies ``limit_*``, the validation
choice and the target encoding (see :mod:`hpo.datasets.prepare`).

Loaders read ``$HPO_DATA_DIR`` when it is set (see :func:`offline_file`: a missing file there is
an error, not a silent download) and otherwise use the real download.

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


def offline_file(*parts: str) -> Path | None:
    """``$HPO_DATA_DIR/<parts>``, or None when HPO_DATA_DIR is unset (download instead).

    Raises FileNotFoundError when the directory is set but lacks the file: an offline machine
    would otherwise hang on a download.
    """
    directory = data_dir()
    if directory is None:
        return None
    path = directory.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"no {path} (HPO_DATA_DIR={directory}; unset it to download)")
    return path
