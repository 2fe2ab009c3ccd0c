"""Opening a study database: one-line errors, directories, busy timeouts, the creation race."""

from __future__ import annotations

import sqlite3
import sys

import optuna
import pytest
import sqlalchemy as sa

import hpo.store.engine
from hpo.errors import SweepError
from hpo.store import Store
from hpo.store.engine import SQLITE_BUSY_TIMEOUT_S, _engine, _engine_kwargs

from conftest import require


def test_without_create_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path):
    path = tmp_path / "missing.db"
    url = f"sqlite:///{path}"
    with pytest.raises(SweepError) as error:
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
    with pytest.raises(SweepError) as error:
        Store.open(url, create=True)
    assert str(error.value) == f"storage {url!r}: cannot open the database ({reason})"
    if url.startswith("mysql"):  # not a file: no file check either
        with pytest.raises(SweepError, match="cannot open the database"):
            Store.open(url)


def test_opening_without_create_never_writes_a_schema(tmp_path):
    path = tmp_path / "not-a-study.db"
    sqlite3.connect(path).close()  # an empty SQLite file, e.g. another program's
    with pytest.raises(Exception):  # noqa: B017  (what Optuna raises is its own business)
        Store.open(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


def race_error(kind: str) -> sa.exc.SQLAlchemyError:
    """What a worker that lost the race to create the tables sees (by dialect and moment)."""
    if kind == "already exists":
        return sa.exc.OperationalError("CREATE TABLE hpo_runs", {},
                                       sqlite3.OperationalError("table hpo_runs already exists"))
    if kind == "duplicate key":
        return sa.exc.OperationalError("CREATE TABLE hpo_runs", {}, Exception(
            'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'))
    cls = {"integrity": sa.exc.IntegrityError, "programming": sa.exc.ProgrammingError}[kind]
    return cls("CREATE TABLE hpo_runs", {}, Exception("relation hpo_runs exists"))


@pytest.fixture
def losing(monkeypatch):
    """Make the table creation fail ``n`` times with ``error``; record the waits between."""
    sleeps: list[float] = []
    calls: list[int] = []
    real = hpo.store.engine.create_tables

    def arrange(error: Exception, n: int) -> None:
        def create_tables(engine):
            calls.append(1)
            if len(calls) <= n:
                raise error
            real(engine)

        monkeypatch.setattr(hpo.store.engine, "create_tables", create_tables)
        monkeypatch.setattr(hpo.store.engine.time, "sleep", sleeps.append)

    return arrange, sleeps, calls


@pytest.mark.parametrize("kind", ["already exists", "duplicate key", "integrity", "programming"])
def test_a_worker_that_loses_the_creation_race_waits_and_tries_again(sqlite_url, losing, kind):
    arrange, sleeps, calls = losing
    arrange(race_error(kind), 2)
    store = Store.open(sqlite_url, create=True)
    store.dispose()
    assert len(calls) == 3
    assert sleeps == pytest.approx([0.2, 0.4])  # longer each time


def test_the_creation_race_is_retried_five_times_at_most(sqlite_url, losing):
    arrange, sleeps, calls = losing
    arrange(race_error("already exists"), 99)
    with pytest.raises(SweepError) as error:
        Store.open(sqlite_url, create=True)
    assert len(calls) == 5
    assert sleeps == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert str(error.value).endswith("cannot open the database (table hpo_runs already exists)")


def test_another_failure_is_not_retried(sqlite_url, losing):
    arrange, sleeps, calls = losing
    arrange(sa.exc.OperationalError("CREATE TABLE hpo_runs", {},
                                    sqlite3.OperationalError("disk I/O error")), 99)
    with pytest.raises(SweepError, match=r"cannot open the database \(disk I/O error\)$"):
        Store.open(sqlite_url, create=True)
    assert (len(calls), sleeps) == (1, [])


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
