"""Opening a study database: one SQLAlchemy engine for hpo, one Optuna RDBStorage, same URL."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from hpo.errors import StorageError
from hpo.store.lease import STALE_AFTER_S
from hpo.store.schema import create_tables

SQLITE_BUSY_TIMEOUT_S = 60
# pg_advisory_lock key held while creating the tables ("hpo" in ASCII): one creator at a time.
_CREATION_LOCK_KEY = 0x68706F


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite ``url``; None for another database or SQLite in memory.

    Example:
        >>> sqlite_file("sqlite:///studies/x.db"), sqlite_file("sqlite://")
        ('studies/x.db', None)
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return parsed.database
    return None


@contextlib.contextmanager
def _creation_lock(url: str, engine: Engine) -> Iterator[None]:
    """Held while creating Optuna's and hpo's tables, so that workers opening a new database
    together create them one after another (CREATE TABLE is not atomic with the existence
    check before it): the first creates, the others find the tables there.

    SQLite: an exclusive ``flock`` on the database's folder. Not on the database file: closing
    any descriptor of that file would drop every POSIX lock this process's SQLite connections
    hold on it (and with them WAL's guarantees); the folder's lock touches no file's locks.
    PostgreSQL: a session advisory lock on a connection outside any transaction. Other
    databases get no lock.
    """
    database = sqlite_file(url)
    if database is not None:
        folder = os.open(Path(database).resolve().parent, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)  # releases the flock
    elif make_url(url).get_backend_name() == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _CREATION_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"),
                             {"key": _CREATION_LOCK_KEY})
    else:
        yield


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    # hpo's own SQLite connections only (listened on its engines, never on SQLAlchemy's Engine
    # class: other databases of the user's process keep their settings). WAL, which lets readers
    # and several writers share the file, is a property of the file and stays for Optuna's
    # connections too; deletions cascade through triggers (schema.py) whatever the connection.
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def _engine(url: str) -> Engine:
    engine = sa.create_engine(url, **_engine_kwargs(url))
    sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _engine_kwargs(url: str) -> dict:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    if make_url(url).get_backend_name() == "postgresql":
        # A worker frozen inside a write transaction (SIGSTOP, a suspended laptop) would hold
        # its row locks, and the claim of its stale trial would wait for ever: the server ends
        # such a session once the lease is stale anyway. hpo's transactions last milliseconds.
        idle_ms = int(max(STALE_AFTER_S, 1.0) * 1000)
        return {"pool_pre_ping": True, "connect_args": {
            "options": f"-c idle_in_transaction_session_timeout={idle_ms}"}}
    return {"pool_pre_ping": True}


@dataclass
class Store:
    """hpo's engine and Optuna's storage on one database URL."""

    url: str
    engine: Engine
    optuna: optuna.storages.RDBStorage

    @classmethod
    def open(cls, url: str, *, create: bool = False) -> Store:
        """Connect to ``url``; with ``create`` make the database and the tables if missing.

        Without ``create``, a SQLite file that does not exist is an error rather than created.
        """
        database = sqlite_file(url)
        if database is not None:
            path = Path(database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise StorageError(f"storage {url!r}: no database file at {path}")
        try:
            engine = _engine(url)
            if not create:
                return cls(url, engine, optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), skip_table_creation=True))
            engine.connect().close()  # WAL before Optuna's first connection
            with _creation_lock(url, engine):
                storage = optuna.storages.RDBStorage(url, engine_kwargs=_engine_kwargs(url))
                create_tables(engine)
            return cls(url, engine, storage)
        except (sa.exc.OperationalError, sa.exc.ArgumentError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise StorageError(f"storage {url!r}: cannot open the database ({reason})") from exc

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by one of hpo's processes on this database at a time (the lock that creating
        the tables takes): for a check-then-write that must not interleave, such as enqueuing
        a configuration unless an equal one exists."""
        return _creation_lock(self.url, self.engine)

    def table_names(self) -> list[str]:
        """The database's tables (Optuna's and hpo's)."""
        return sa.inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        """Close every connection of both engines."""
        self.engine.dispose()
        self.optuna.remove_session()
        self.optuna.engine.dispose()
