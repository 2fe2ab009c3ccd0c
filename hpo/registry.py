"""Name → callable registries for model builders and dataset loaders.

A registry entry is either a registered name (``"mlp"``) or a ``"package.module:function"`` path
imported from ``sys.path`` (the current directory included). Registered entries are stored as
import paths too, so that looking a name up never imports Keras or TensorFlow.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

from hpo.errors import SweepError


class Registry:
    """Named callables of one kind.

    Example:
        >>> r = Registry("model.builder")
        >>> r.register("dense", "hpo.models.mlp:build")
        >>> r.resolve("dense").__name__
        'build'
    """

    def __init__(self, key: str) -> None:
        self.key = key
        self._entries: dict[str, str | Callable[..., Any]] = {}

    def register(self, name: str, target: str | Callable[..., Any]) -> None:
        """Register ``target`` (a callable, or a ``module:function`` path) under ``name``."""
        self._entries[name] = target

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def check(self, name: str) -> None:
        """Raise SweepError unless ``name`` is registered or an importable ``module:function``.

        Registered names are not imported, so checking ``"mlp"`` does not import Keras.
        """
        if name not in self._entries:
            self.resolve(name)

    def resolve(self, name: str) -> Callable[..., Any]:
        """Return the callable for a registered name or a ``module:function`` path."""
        if not isinstance(name, str) or not name:
            raise SweepError(
                f"{self.key} = {name!r}: expected a registered name or module:function"
            )
        target = self._entries.get(name, name)
        if callable(target):
            return target
        if ":" not in target:
            raise SweepError(
                f"{self.key} = {name!r}: unknown; expected one of {', '.join(self.names())} "
                "or 'package.module:function'"
            )
        return import_callable(self.key, target)


_FUNCTION_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def is_function_path(value: str) -> bool:
    """True when ``value`` reads as ``"package.module:function"`` (not a file path).

    Example:
        >>> is_function_path("mypkg.stores:s3"), is_function_path("studies/x/artifacts")
        (True, False)
    """
    return bool(_FUNCTION_PATH.fullmatch(value))


def import_callable(key: str, path: str) -> Callable[..., Any]:
    """The function ``path`` ("package.module:function", found from the working directory
    too) names; :class:`SweepError` naming ``key`` when it cannot be imported."""
    module_name, _, attr = path.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        # The documented contract: user modules are found from the current directory.
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, a relative or empty name, or the module's own error
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise SweepError(
            f"{key} = {path!r}: cannot import module {module_name!r} ({reason})"
        ) from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SweepError(f"{key} = {path!r}: module {module_name!r} has no function {attr!r}")
    return fn
