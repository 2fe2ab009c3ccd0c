"""The database's clock: the one time every worker of a study agrees on.

Leases, heartbeats and the start and end of runs are written with :class:`utcnow`, evaluated by
the database, never from a process's own clock: on PostgreSQL the server's clock, so workers on
other machines, in other time zones or with clocks that disagree still share one clock; on
SQLite (one machine) the clock of the machine that holds the file, in UTC, whatever the workers'
time zones. A step of that one clock (NTP, a resumed virtual machine) by more than the stale
limit makes live leases look stale: fencing keeps that safe, at the cost of the runs in flight.
All hpo times are naive UTC. Optuna's ``datetime_start``/``datetime_complete`` are the asking
process's local time: hpo never compares them with anything.

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
