"""Packs: how a trial's seeded replicas train together, one implementation per way.

:class:`~hpo.training.packs.base.Pack` is the interface (in :mod:`~hpo.training.packs.base`,
with the helpers the implementations share); :class:`~hpo.training.packs.functional.FunctionalPack`
works on any backend and model; :mod:`~hpo.training.packs.tf` and :mod:`~hpo.training.packs.jax`
are the backends' fast paths, each with an ``applies(models)`` that says when it may be used.
:func:`make_pack` chooses from :data:`FAST_PATHS`. A new backend's fast path is one module and
one entry there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hpo._imports import LazyImport
from hpo.config import uses_sparse_targets
from hpo.datasets.prepare import Split, encode_targets
from hpo.training.job import TrainingJob
from hpo.training.packs.base import (
    FastPathUnavailable,
    Pack,
    build_replicas,
    prepare_replicas,
)
from hpo.training.packs.functional import FunctionalPack

__all__ = ["FAST_PATHS", "FastPathUnavailable", "FunctionalPack", "Pack", "fast_path_applies",
           "make_fast_pack", "make_pack"]

keras = LazyImport("keras")

# Keras backend -> ("module:applies", "module:Pack class") of its fast path. Import paths, so
# that choosing imports only the running backend's module (never TensorFlow on JAX).
FAST_PATHS: dict[str, tuple[str, str]] = {
    "tensorflow": ("hpo.training.packs.tf:applies", "hpo.training.packs.tf:TfPack"),
    "jax": ("hpo.training.packs.jax:applies", "hpo.training.packs.jax:JaxPack"),
}


def make_pack(jobs: Sequence[TrainingJob], seeds: Sequence[int], splits: Sequence[Split],
              fast: bool = True) -> Pack:
    """Build replica i from ``jobs[i]`` and ``seeds[i]``, and the pack that trains them all: the
    backend's fast path where it applies (and ``fast``), else a :class:`FunctionalPack`.

    The jobs may differ in their model (trials packed together) but must share their training
    settings and data (ValueError otherwise). ``splits[i]`` is ``seeds[i]``'s split of the data;
    the pack validates on their rows.
    """
    return _make(jobs, seeds, splits, fast=fast, fallback=True)


def make_fast_pack(jobs: Sequence[TrainingJob], seeds: Sequence[int],
                   splits: Sequence[Split]) -> Pack | None:
    """:func:`make_pack`'s fast path, or None where none applies."""
    return _make(jobs, seeds, splits, fast=True, fallback=False)


def fast_path_applies(models: Sequence) -> bool:
    """True when this backend has a fast path and it takes ``models``."""
    fast_path = FAST_PATHS.get(keras.backend.backend())
    return fast_path is not None and _resolve(fast_path[0])(models)


def _make(jobs: Sequence[TrainingJob], seeds: Sequence[int], splits: Sequence[Split],
          fast: bool, fallback: bool) -> Pack | None:
    spec, source = jobs[0].spec, jobs[0].data
    if any(job.spec != spec or job.data is not source for job in jobs):
        raise ValueError("replicas packed together must share their training settings and data")
    models = build_replicas(jobs, seeds)
    on_fast_path = fast and fast_path_applies(models)
    if not (on_fast_path or fallback):
        return None  # before preparing the table: a solo run asks this for every seed
    y = encode_targets(source.y, source.n_classes, uses_sparse_targets(spec.loss))
    x = source.x.astype("float32", copy=False)
    val_rows = np.stack([s.val for s in splits], axis=1).astype("int32")
    if on_fast_path:
        prepare_replicas(models, x, y, spec)
        return _resolve(FAST_PATHS[keras.backend.backend()][1])(models, x, y, val_rows, spec)
    return FunctionalPack(models, x, y, val_rows, spec, len(splits[0].train))


def _resolve(path: str) -> Callable[..., Any]:
    """``"package.module:name"`` → that module's ``name``, importing the module."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)
