"""The database's clock: the one time every worker of a study agrees on.

Leases, heartbeats and the start and end of runs are written with :class:`utcnow`, evaluated by
the database server, never with a process's own clock: workers on other machines, in other time
zones or with a stepped clock still order their writes by one clock. All hpo times are naive UTC.
Optuna's ``datetime_start``/``datetime_complete`` are the asking process's local time: hpo never
compares them with anything.

Example:
    >>> import sqlalchemy as sa
    >>> engine = sa.create_engine("sqlite://")
    >>> with engine.connect() as conn:
    ...     now = database_now(conn)
    >>> now.tzinfo is None and now.year >= 2024
    True
"""

from __future__ import annotations

import datetime

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import expression


class utcnow(expression.FunctionElement):  # noqa: N801  (an SQL function, named as SQL's are)
    """The database server's current time as naive UTC (SQLAlchemy's compiler-extension recipe)."""

    type = sa.DateTime()
    inherit_cache = True


@compiles(utcnow, "postgresql")
def _postgresql_utcnow(element: utcnow, compiler: object, **kw: object) -> str:
    return "TIMEZONE('utc', CLOCK_TIMESTAMP())"


@compiles(utcnow, "sqlite")
def _sqlite_utcnow(element: utcnow, compiler: object, **kw: object) -> str:
    # Milliseconds padded to the six digits SQLAlchemy writes, so stored times compare equal to
    # the same time sent back as a parameter.
    return "STRFTIME('%Y-%m-%d %H:%M:%f000', 'now')"


@compiles(utcnow)
def _default_utcnow(element: utcnow, compiler: object, **kw: object) -> str:
    return "CURRENT_TIMESTAMP"


def database_now(conn: sa.Connection) -> datetime.datetime:
    """The database server's time now (naive UTC)."""
    return conn.execute(sa.select(utcnow())).scalar_one()
