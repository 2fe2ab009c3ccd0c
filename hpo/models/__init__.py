"""Model builders: ``build(input_shape, n_classes, **params) -> keras.Model`` (uncompiled).

hpo compiles and trains what a builder returns. ``params`` are the ``[model]`` keys (but
``builder``) plus the sampled parameters that are not ``[train]`` keys. A keyword annotated
``int`` (or ``Sequence[int]``, a list of widths) takes only integers: :func:`integer_keywords`
reads that from the signature, so a sweep is checked before anything trains. The shipped builders
import Keras only when called, so that reading their signatures stays fast.

Example:
    >>> from hpo.models import builders
    >>> "mlp" in builders.names()
    True
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from hpo.registry import Registry

builders = Registry("model.builder")
builders.register("mlp", "hpo.models.mlp:build")
builders.register("cnn", "hpo.models.cnn:build")
builders.register("transformer", "hpo.models.transformer:build")


def register_model(name: str, build: Callable[..., Any] | str) -> None:
    """Make ``build`` usable as ``[model] builder = name`` in sweep files run from this process."""
    builders.register(name, build)


INTEGER = "an integer"
INTEGERS = "a list of integers"


def integer_keywords(build: Callable[..., Any]) -> dict[str, str]:
    """The keywords of ``build`` that take integers, read from its signature's annotations.

    Maps a keyword annotated ``int`` (or ``int | None``) to :data:`INTEGER`, one annotated
    ``Sequence[int]``, ``list[int]`` or ``tuple[int, ...]`` to :data:`INTEGERS`. Other keywords,
    ``**kwargs`` and annotations that cannot be evaluated are left out: the builder judges those
    values when it is called.

    Example:
        >>> def build(input_shape, n_classes, *, width: int = 8, rate: float = 0.1,
        ...           hidden: list[int] | None = None, **more: int): ...
        >>> integer_keywords(build)
        {'width': 'an integer', 'hidden': 'a list of integers'}
    """
    try:
        parameters = inspect.signature(build).parameters.values()
    except (TypeError, ValueError):  # a builtin or a class without a readable signature
        return {}
    named = (p for p in parameters
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    kinds = {p.name: _integer_kind(_annotation(build, p.annotation)) for p in named}
    return {name: kind for name, kind in kinds.items() if kind is not None}


def _annotation(build: Callable[..., Any], annotation: Any) -> Any:
    """``annotation`` evaluated: ``from __future__ import annotations`` leaves strings."""
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, getattr(build, "__globals__", {}))  # as typing.get_type_hints
    except Exception:  # a name only imported for type checkers, or not Python at all
        return inspect.Parameter.empty


def _integer_kind(annotation: Any) -> str | None:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = {_integer_kind(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if annotation is int:
        return INTEGER
    sequence = isinstance(origin, type) and issubclass(origin, Sequence)
    if sequence and origin is not str and args in ((int,), (int, ...)):
        return INTEGERS
    return None
