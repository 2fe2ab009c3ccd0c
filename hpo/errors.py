"""The one exception type hpo raises for problems a user can fix.

The CLI prints its message as one line and exits with its ``exit_code``: 2 for bad input (a sweep
file, an override, a storage URL), 1 for failures at run time.
"""

from __future__ import annotations

import re


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


class LeaseLost(Exception):
    """This worker no longer holds the trial it was training: another worker took it over (this
    one was frozen or cut off past the stale limit). Raised by a write the lease fences; not a
    run's failure, so trainers let it through, and the worker drops the trial and goes on.
    """

    def __init__(self, trial_id: int, holder: str | None) -> None:
        super().__init__(f"trial id {trial_id} is held by {holder or 'nobody'}")
        self.trial_id, self.holder = trial_id, holder


def key_path(*parts: str) -> str:
    """A dotted key path for a message, each key written as TOML would: bare when it can be,
    else quoted, so that a key with a line break or a dot in it still reads as one key on one
    line.

    Example:
        >>> key_path("train", "epochs"), key_path("model", "a b\\nc")
        ('train.epochs', "model.'a b\\\\nc'")
    """
    return ".".join(part if _BARE.fullmatch(part) else repr(part) for part in parts)


_BARE = re.compile(r"[A-Za-z0-9_-]+")
