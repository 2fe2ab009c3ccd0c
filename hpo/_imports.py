"""Heavy optional dependencies, declared once at the top of the module that needs them.

``keras = LazyImport("keras")`` reads like an import and costs nothing until an attribute is
used: validating a sweep or reading results never imports Keras, TensorFlow, JAX or Optuna's
dashboard, and a process on the JAX backend never imports TensorFlow. (Optuna's own
``optuna._imports._LazyImport`` is private, so hpo keeps this small equivalent.)

Example:
    >>> json = LazyImport("json")
    >>> json.dumps([1])
    '[1]'
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyImport(types.ModuleType):
    """A module imported at the first attribute access (``importlib.import_module(name)``)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._name = name

    def _load(self) -> types.ModuleType:
        module = importlib.import_module(self._name)
        self.__dict__.update(module.__dict__)
        return module

    def __getattr__(self, item: str) -> Any:
        return getattr(self._load(), item)
