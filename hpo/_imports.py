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
    """A module imported at the first attribute access (``importlib.import_module(name)``).

    Attributes are looked up on the real module each time rather than copied, so a module's own
    globals can never shadow this object's. Dunder probes before the import (doctest's
    ``__wrapped__``, ``inspect``) raise AttributeError instead of importing a heavy module.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._lazy_module: types.ModuleType | None = None

    def __getattr__(self, item: str) -> Any:
        # Called only for names not on this object itself.
        if self._lazy_module is None:
            if item.startswith("__") and item.endswith("__"):
                raise AttributeError(item)
            self._lazy_module = importlib.import_module(self.__name__)
        return getattr(self._lazy_module, item)
