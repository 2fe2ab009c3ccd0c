"""Ctrl-C that stops a sweep even when Python drops it.

Python raises ``KeyboardInterrupt`` wherever the main thread is when the signal is handled; if
that is inside a ``__del__`` (TensorFlow's functions are collected during training), Python
prints "Exception ignored in ..." and goes on: the sweep would run to its end. While
:func:`delivered` is active, a Ctrl-C is also remembered, and :func:`check` (called by the
trial's sink after every epoch) raises it again, so a dropped one stops the sweep one epoch
later and is handled as any Ctrl-C (the trial stays resumable).

Example:
    >>> with delivered():
    ...     check()  # no Ctrl-C yet: nothing happens
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

_pending = threading.Event()


def _interrupt(signum, frame) -> None:
    _pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def delivered() -> Iterator[None]:
    """Remember Ctrl-C meanwhile (in the main thread only: elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _pending.clear()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C came since :func:`delivered` began."""
    if _pending.is_set():
        raise KeyboardInterrupt
