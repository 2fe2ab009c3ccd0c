"""Model builders: ``build(input_shape, n_classes, **params) -> keras.Model`` (uncompiled).

hpo compiles and trains what a builder returns. ``params`` are the ``[model]`` keys (but
``builder``) plus the sampled parameters that are not ``[train]`` keys.

Example:
    >>> from hpo.models import builders
    >>> "mlp" in builders.names()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hpo.registry import Registry

builders = Registry("model.builder")
builders.register("mlp", "hpo.models.mlp:build")
builders.register("cnn", "hpo.models.cnn:build")
builders.register("transformer", "hpo.models.transformer:build")


def register_model(name: str, build: Callable[..., Any] | str) -> None:
    """Make ``build`` usable as ``[model] builder = name`` in sweep files run from this process."""
    builders.register(name, build)
