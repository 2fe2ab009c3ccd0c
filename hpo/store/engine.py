"""Opening a study database: one SQLAlchemy engine for hpo, one Optuna RDBStorage, same URL."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from hpo.errors import SweepError
from hpo.store.lease import STALE_AFTER_S
from hpo.store.schema import create_tables

SQLITE_BUSY_TIMEOUT_S = 60
_CREATE_ATTEMPTS = 5


def _lost_creation_race(exc: Exception) -> bool:
    # Workers opening a new database together all create its tables; CREATE TABLE is not
    # atomic with the existence check before it, so the losers see these errors and retry.
    text = str(exc).lower()
    return isinstance(exc, sa.exc.IntegrityError | sa.exc.ProgrammingError) or (
        "already exists" in text or "duplicate key" in text)


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
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            path = Path(parsed.database)
            if create:
                path.parent.mkdir(parents=True, exist_ok=True)
            elif not path.exists():
                raise SweepError(f"storage {url!r}: no database file at {path}")
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                engine = _engine(url)
                if create:  # WAL before Optuna's first connection, which may create the file
                    engine.connect().close()
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=_engine_kwargs(url), skip_table_creation=not create
                )
                if create:
                    create_tables(engine)
                return cls(url, engine, storage)
            except (sa.exc.SQLAlchemyError, ImportError) as exc:
                if _lost_creation_race(exc) and attempt + 1 < _CREATE_ATTEMPTS:
                    time.sleep(0.2 * (attempt + 1))  # another worker is creating the tables
                    continue
                if not isinstance(exc, (sa.exc.OperationalError, sa.exc.ArgumentError,
                                        ImportError)):
                    raise
                reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
                raise SweepError(
                    f"storage {url!r}: cannot open the database ({reason})") from exc
        raise AssertionError("unreachable")

    def table_names(self) -> list[str]:
        return sa.inspect(self.engine).get_table_names()

    def dispose(self) -> None:
        self.engine.dispose()
        self.optuna.remove_session()
        self.optuna.engine.dispose()
