"""Trial leases: which process trains a trial, its heartbeat, and claiming a stale trial.

Optuna leaves the trial of a killed process RUNNING forever. Its own heartbeat would fail such a
trial and retry its parameters as a new trial; hpo instead completes the *same* trial, so that its
finished seeds are reused and its number (and grid point) stays. A lease row per trial names the
process holding it; a background thread refreshes ``heartbeat_at``. A RUNNING trial is stale when

- its holder ran on this host and that process is gone (detected at once, e.g. after kill -9),
- its heartbeat is older than ``stale_after`` seconds (a machine that died), or
- it has no lease and started more than ``stale_after`` seconds ago (killed right after asking).

Claiming is one conditional UPDATE (or an INSERT on the primary key), so of several workers
racing for a stale trial exactly one wins, on SQLite and on PostgreSQL alike.

Example:
    >>> import os, tempfile, optuna
    >>> from hpo.store import Store
    >>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "l.db"), create=True)
    >>> study = optuna.create_study(storage=store.optuna)
    >>> trial = study.ask()
    >>> mine = Leases(store.engine)
    >>> mine.take(trial._trial_id)
    >>> mine.stale(study)  # its holder, this process, is alive
    []
    >>> mine.release(trial._trial_id)  # as after Ctrl-C: the next hpo run resumes it
    >>> [t.number for t in mine.stale(study)], mine.claim(trial._trial_id)
    ([0], True)
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import uuid
from collections.abc import Iterator

import optuna
import sqlalchemy as sa

from hpo.store.schema import Lease

HEARTBEAT_S = 10.0
STALE_AFTER_S = 60.0
_RELEASED = datetime.datetime(1970, 1, 1)  # a heartbeat this old is stale for everyone
# One token per process: a new process that got a dead one's pid is still told apart from it.
_PROCESS_TOKEN = uuid.uuid4().hex[:12]


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Leases:
    """This process's leases on trials of one database."""

    def __init__(self, engine: sa.Engine, stale_after: float = STALE_AFTER_S) -> None:
        self.engine, self.stale_after = engine, stale_after
        self.host, self.pid = socket.gethostname()[:128], os.getpid()
        self.owner = f"{self.host}:{self.pid}:{_PROCESS_TOKEN}"
        self._seen: dict[int, tuple[str, datetime.datetime]] = {}  # what stale() saw

    def take(self, trial_id: int) -> None:
        """Hold a trial this process just created."""
        with self.engine.begin() as conn:
            conn.execute(sa.insert(Lease).values(self._mine(trial_id)))

    def release(self, trial_id: int) -> None:
        """Let anyone resume this trial at once (the process stops without finishing it)."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(Lease).where(Lease.trial_id == trial_id,
                                                Lease.owner == self.owner)
                         .values(heartbeat_at=_RELEASED))

    def stale(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The study's RUNNING trials whose holder is gone, oldest first."""
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if not running:
            return []
        ids = [t._trial_id for t in running]
        with self.engine.connect() as conn:
            leases = {row.trial_id: row for row in
                      conn.execute(sa.select(Lease).where(Lease.trial_id.in_(ids)))}
        limit = _now() - datetime.timedelta(seconds=self.stale_after)
        found = []
        self._seen = {}
        for trial in running:
            lease = leases.get(trial._trial_id)
            if lease is None:
                started = trial.datetime_start
                if started is None or started < limit:
                    found.append(trial)
                continue
            self._seen[trial._trial_id] = (lease.owner, lease.heartbeat_at)
            if lease.heartbeat_at == _RELEASED or lease.owner != self.owner and (
                lease.heartbeat_at < limit
                or (lease.host == self.host and (lease.pid == self.pid
                                                 or _process_gone(lease.pid)))
            ):
                found.append(trial)
        return sorted(found, key=lambda t: t.number)

    def claim(self, trial_id: int) -> bool:
        """Take over a trial that :meth:`stale` reported; False when another process got it
        first (its lease no longer holds what ``stale`` saw)."""
        seen = self._seen.pop(trial_id, None)
        with self.engine.begin() as conn:
            if seen is None:
                try:
                    with conn.begin_nested():
                        conn.execute(sa.insert(Lease).values(self._mine(trial_id)))
                except sa.exc.IntegrityError:
                    return False
                return True
            owner, heartbeat_at = seen
            won = conn.execute(
                sa.update(Lease)
                .where(Lease.trial_id == trial_id, Lease.owner == owner,
                       Lease.heartbeat_at == heartbeat_at)
                .values(owner=self.owner, host=self.host, pid=self.pid, heartbeat_at=_now())
            ).rowcount
        return won == 1

    @contextlib.contextmanager
    def heartbeat(self, trial_id: int, every: float = HEARTBEAT_S) -> Iterator[None]:
        """Refresh this process's lease on ``trial_id`` every ``every`` seconds meanwhile."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                with contextlib.suppress(sa.exc.SQLAlchemyError):  # the next beat retries
                    with self.engine.begin() as conn:
                        conn.execute(sa.update(Lease).where(Lease.trial_id == trial_id,
                                                            Lease.owner == self.owner)
                                     .values(heartbeat_at=_now()))

        thread = threading.Thread(target=beat, name=f"hpo-heartbeat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _mine(self, trial_id: int | None = None) -> dict:
        return {"trial_id": trial_id, "owner": self.owner, "host": self.host, "pid": self.pid,
                "heartbeat_at": _now()}
