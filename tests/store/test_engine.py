"""Opening a study database: one-line errors, directories, busy timeouts, one creator at a time."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

import hpo.store.engine
from hpo.errors import StorageError
from hpo.store import Store
from hpo.store.engine import SQLITE_BUSY_TIMEOUT_S, _engine, _engine_kwargs

from conftest import require


def test_without_create_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "missing.db"
    url = f"sqlite:///{path}"
    with pytest.raises(StorageError) as error:
        Store.open(url)
    assert str(error.value) == f"storage {url!r}: no database file at {path}"
    assert not path.exists()


def test_create_makes_the_folders_the_tables_and_keeps_the_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'study.db'}"
    store = Store.open(url, create=True)
    try:
        assert store.url == url
        assert {"trials", "hpo_runs", "hpo_epochs", "hpo_leases"} <= set(store.table_names())
    finally:
        store.dispose()
    Store.open(url).dispose()  # now it exists: opened without create


def test_both_engines_wait_for_a_busy_database_instead_of_failing(sqlite_url):
    # Optuna's own connections (its RDBStorage engine) too: workers share one file.
    store = Store.open(sqlite_url, create=True)
    try:
        for engine in (store.engine, store.optuna.engine):
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == (
                    SQLITE_BUSY_TIMEOUT_S * 1000)
    finally:
        store.dispose()


def test_postgresql_connections_are_checked_before_use():
    # A server restarted between two heartbeats must not fail the next write (no connection is
    # made here: create_engine is lazy).
    require("psycopg", "PostgreSQL's driver (the postgres extra)")
    engine = _engine("postgresql+psycopg://user@127.0.0.1:1/hpo")
    assert engine.pool._pre_ping
    engine.dispose()


@pytest.mark.parametrize(("stale_after", "idle_ms"), [(60.0, 60000), (90.5, 90500), (0.2, 1000)])
def test_postgresql_ends_a_session_idle_in_a_transaction_once_its_lease_is_stale(
        monkeypatch, stale_after, idle_ms):
    # A worker frozen inside a write keeps its row locks; the server ends its session at the
    # stale limit (at least a second), so the claim of its stale trial does not wait for ever.
    monkeypatch.setattr(hpo.store.engine, "STALE_AFTER_S", stale_after)
    assert _engine_kwargs("postgresql+psycopg://user@host/hpo") == {
        "pool_pre_ping": True,
        "connect_args": {"options": f"-c idle_in_transaction_session_timeout={idle_ms}"}}
    # Any other server: checked before use, nothing PostgreSQL-specific.
    assert _engine_kwargs("mysql://user@host/hpo") == {"pool_pre_ping": True}


@pytest.mark.parametrize(
    ("make_url", "reason"),
    [
        # The driver's own message, first line, without SQLAlchemy's "(sqlite3.OperationalError)".
        (lambda tmp: f"sqlite:///{tmp}", "unable to open database file"),  # a folder
        (lambda tmp: "nope://host/x", "Can't load plugin: sqlalchemy.dialects:nope"),
        (lambda tmp: "mysql://user@host/x", "import of MySQLdb halted; None in sys.modules"),
    ],
)
def test_a_database_that_cannot_be_opened_is_one_line_naming_the_url_and_why(
        tmp_path, monkeypatch, make_url, reason):
    monkeypatch.setitem(sys.modules, "MySQLdb", None)  # its driver is missing
    url = make_url(tmp_path)
    with pytest.raises(StorageError) as error:
        Store.open(url, create=True)
    assert str(error.value) == f"storage {url!r}: cannot open the database ({reason})"
    if url.startswith("mysql"):  # not a file: no file check either
        with pytest.raises(StorageError, match="cannot open the database"):
            Store.open(url)


def test_opening_without_create_never_writes_a_schema(tmp_path):
    path = tmp_path / "not-a-study.db"
    sqlite3.connect(path).close()  # an empty SQLite file, e.g. another program's
    with pytest.raises(Exception):  # noqa: B017  (what Optuna raises is its own business)
        Store.open(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def hold_creation_lock(url: str):
    """Take the lock Store.open(create=True) takes, as another creating worker would."""
    engine = _engine(url)
    return engine, hpo.store.engine._creation_lock(url, engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_workers_creating_a_database_together_wait_for_the_first(backend, tmp_path, request):
    """The creation race (CREATE TABLE is not atomic with its existence check) cannot happen:
    while one worker creates, another opening with create waits, then finds the tables."""
    url = (f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite"
           else request.getfixturevalue("postgres_url"))
    engine, lock = hold_creation_lock(url)
    opened: list[Store] = []
    with lock:
        other = threading.Thread(target=lambda: opened.append(Store.open(url, create=True)))
        other.start()
        other.join(timeout=1.5)
        assert other.is_alive()  # waiting for the lock, not creating beside its holder
        assert "hpo_runs" not in sa.inspect(engine).get_table_names()
    other.join(timeout=60)
    assert not other.is_alive()
    store = opened[0]
    assert {"studies", "trials", "hpo_runs", "hpo_epochs", "hpo_leases"} <= set(
        store.table_names())
    store.dispose()
    engine.dispose()
    again = Store.open(url, create=True)  # tables there: created once, found after
    again.dispose()


def test_a_failure_while_creating_is_one_line_and_releases_the_lock(sqlite_url, monkeypatch):
    calls: list[int] = []

    def create_tables(engine):
        calls.append(1)
        raise sa.exc.OperationalError("CREATE TABLE hpo_runs", {},
                                      sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(hpo.store.engine, "create_tables", create_tables)
    with pytest.raises(StorageError, match=r"cannot open the database \(disk I/O error\)$"):
        Store.open(sqlite_url, create=True)
    assert len(calls) == 1  # not retried
    monkeypatch.undo()
    Store.open(sqlite_url, create=True).dispose()  # the lock was released


def test_an_old_database_gets_the_lease_columns_added_since(sqlite_url):
    # hpo_leases as the first hpo wrote it, without namespace and generation.
    store = Store.open(sqlite_url, create=True)
    study = optuna.create_study(storage=store.optuna)
    trial_id = study.ask()._trial_id
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE hpo_leases")
        conn.exec_driver_sql(
            "CREATE TABLE hpo_leases (trial_id INTEGER PRIMARY KEY REFERENCES trials(trial_id)"
            " ON DELETE CASCADE, owner VARCHAR(160) NOT NULL, host VARCHAR(128) NOT NULL,"
            " pid INTEGER NOT NULL, heartbeat_at DATETIME NOT NULL)")
        conn.exec_driver_sql("INSERT INTO hpo_leases VALUES (?, 'old', 'h', 1, "
                             "'2024-01-01 00:00:00.000000')", (trial_id,))
    store.dispose()
    store = Store.open(sqlite_url, create=True)
    try:
        with store.engine.connect() as conn:
            row = conn.exec_driver_sql(
                "SELECT owner, namespace, generation FROM hpo_leases").one()
        assert tuple(row) == ("old", "", 1)
    finally:
        store.dispose()


def posix_locks(path) -> list[str]:
    """This process's POSIX locks on ``path`` (/proc/locks: id, kind, mode, type, pid,
    maj:min:inode, start, end)."""
    inode = os.stat(path).st_ino
    return sorted(" ".join(fields[1:4] + fields[6:]) for line in
                  Path("/proc/locks").read_text().splitlines()
                  if (fields := line.split()) and fields[4] == str(os.getpid())
                  and fields[5].endswith(f":{inode}"))


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads Linux's /proc/locks")
def test_creating_keeps_the_locks_this_processs_sqlite_connections_hold(tmp_path):
    """Closing any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
    included: the creation lock must never open the database file itself."""
    path = tmp_path / "study.db"
    url = f"sqlite:///{path}"
    store = Store.open(url, create=True)
    with store.engine.connect() as conn:
        conn.exec_driver_sql("SELECT COUNT(*) FROM hpo_runs").all()
        held = posix_locks(path)
        assert held  # the WAL connection's read lock on the database file
        other = Store.open(url, create=True)  # a second worker of this process starts
        assert posix_locks(path) == held
        other.dispose()
    store.dispose()
