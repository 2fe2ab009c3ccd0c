"""The exception types hpo raises for problems a user can fix, each with a one-line message.

The CLI prints the message and exits with the type's ``exit_code``: 2 for bad input (a sweep
file or override: :class:`SweepError`; a database URL: :class:`StorageError`; a question about
results naming what is not recorded: :class:`QueryError` and its :class:`StudyNotFound` and
:class:`MetricNotFound`), 1 for failures at run time (:class:`RunError`). :class:`LeaseLost` is
not a user's problem: it tells a worker to drop a trial another worker took over.
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


class StorageError(HpoError):
    """The database URL cannot be used: not a URL, no such database file, not reachable."""


class QueryError(HpoError):
    """A question about recorded results names something the study does not have (a trial,
    a parameter) or asks it in a way that has no answer (an unknown table or format).

    Made by :meth:`about` it also keeps the argument it is about, so that a front end can name
    that argument its own way (the CLI: ``--param``) without reading the message.

    Example:
        >>> error = QueryError.about("param", "depth", "not a parameter of 'x'")
        >>> str(error), str(error.naming("--param"))
        ("param = 'depth': not a parameter of 'x'", "--param 'depth': not a parameter of 'x'")
    """

    def __init__(self, message: str, *, argument: str | None = None, value: object = None,
                 reason: str = "") -> None:
        super().__init__(message)
        self.argument, self.value, self.reason = argument, value, reason

    @classmethod
    def about(cls, argument: str, value: object, reason: str) -> QueryError:
        """``argument = value: reason`` (``argument: reason`` when ``value`` is None)."""
        message = (f"{argument} = {value!r}: {reason}" if value is not None
                   else f"{argument}: {reason}")
        return cls(message, argument=argument, value=value, reason=reason)

    def naming(self, name: str) -> QueryError:
        """The same error with its argument written as ``name`` (e.g. a command-line flag)."""
        message = f"{name} {self.value!r}: {self.reason}" if self.value is not None else (
            f"{name}: {self.reason}")
        return type(self)(message, argument=self.argument, value=self.value, reason=self.reason)


class StudyNotFound(QueryError):
    """No study of that name (or number) in the database."""


class MetricNotFound(QueryError):
    """The study recorded no values of that metric (history key)."""


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
