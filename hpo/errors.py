"""The one exception type hpo raises for problems a user can fix.

The CLI prints its message as one line and exits with its ``exit_code``: 2 for bad input (a sweep
file, an override, a storage URL), 1 for failures at run time.
"""

from __future__ import annotations


class HpoError(Exception):
    """A problem explained in one line for a human.

    Example:
        >>> raise HpoError("train.epochs = 0: expected an integer >= 1")
        Traceback (most recent call last):
        ...
        hpo.errors.HpoError: train.epochs = 0: expected an integer >= 1
    """

    exit_code = 2


class SweepError(HpoError):
    """The sweep (file, overrides or the study it would join) is not acceptable; nothing was run."""


class RunError(HpoError):
    """Something failed while running; what was recorded stays recorded."""

    exit_code = 1
