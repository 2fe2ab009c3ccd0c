"""Trial leases: which worker trains a trial, its heartbeat, claiming a stale trial, and fencing.

Optuna leaves the trial of a killed process RUNNING forever. Its own heartbeat would fail such a
trial and retry its parameters as a new trial; hpo instead completes the *same* trial, so that its
finished seeds are reused and its number (and grid point) stays. A lease row per trial names the
worker holding it and the claim's ``generation``; a background thread refreshes ``heartbeat_at``.
Every time is the database's (:mod:`hpo.store.clock`): no worker compares its own clock with a
time another wrote. A RUNNING trial is stale when

- its lease was released (Ctrl-C, an error of hpo itself),
- its heartbeat is older than ``stale_after`` seconds by the database's clock (a machine that
  died, a frozen or suspended process, a lost network),
- its holder provably ran on this machine, in this PID namespace (same host, boot id and
  ``/proc/self/ns/pid``), and that process is gone (detected at once, e.g. after kill -9), or
- it has no lease, ``stale_after`` seconds after a worker first found it so (its process died
  between asking the trial and taking it; the finder writes a placeholder lease to time it).

Claiming is one conditional UPDATE that increments the generation, so of several workers racing
for a stale trial exactly one wins, on SQLite and on PostgreSQL alike. **Fencing**: every write a
holder makes for its trial (a run started, an epoch, a run finished, the final ``tell``) first
updates its own lease row *where the generation is still the one it claimed*, in the same
transaction (:func:`fence`); a worker whose trial was taken over finds no such row, gets
:class:`~hpo.errors.LeaseLost`, writes nothing more and drops the trial.

Example:
    >>> import os, tempfile, optuna
    >>> from hpo.store import Store
    >>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "l.db"), create=True)
    >>> study = optuna.create_study(storage=store.optuna)
    >>> trial = study.ask()
    >>> mine = Leases(store.engine)
    >>> claim = mine.take(trial._trial_id)
    >>> claim.generation, mine.stale(study)  # its holder, this process, is alive
    (1, [])
    >>> mine.release(claim)  # as after Ctrl-C: the next hpo run resumes it
    >>> [t.number for t in mine.stale(study)], mine.claim(trial._trial_id).generation
    ([0], 2)
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import optuna
import sqlalchemy as sa

from hpo.errors import LeaseLost
from hpo.store.clock import database_now, utcnow
from hpo.store.schema import Lease

HEARTBEAT_S = float(os.environ.get("HPO_HEARTBEAT_S", 10.0))
STALE_AFTER_S = float(os.environ.get("HPO_STALE_AFTER_S", 60.0))
_RELEASED = datetime.datetime(1970, 1, 1)  # a heartbeat this old is stale for everyone
_PLACEHOLDER = ""  # owner of a lease written for a RUNNING trial found without one
# One random id per process: a later process that got a dead one's pid is still told apart.
_PROCESS_ID = uuid.uuid4().hex


class Claim(NamedTuple):
    """A worker's hold on a trial: valid while the lease row still has this owner and
    generation."""

    trial_id: int
    owner: str
    generation: int


class _Seen(NamedTuple):
    """A lease as :meth:`Leases.stale` read it; :meth:`Leases.claim` wins only if it is
    unchanged."""

    generation: int
    heartbeat_at: datetime.datetime


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _namespace() -> str:
    """This machine's boot and this process's PID namespace, or "" where Linux does not say."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = ""
    return f"{boot}/{pid_ns}" if boot and pid_ns else ""


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fence(conn: sa.Connection, claim: Claim) -> None:
    """Inside a write transaction: go on only while ``claim`` still holds its trial.

    Updates the holder's own heartbeat where owner and generation still match, so the check and
    the write that follows commit together: a claimer's conditional UPDATE of the same row is
    ordered before or after this transaction, never between the check and the write (SQLite
    takes its write lock at this statement; PostgreSQL locks the row until commit).

    Raises:
        LeaseLost: another worker claimed the trial, this worker released it, or the trial was
            deleted.
    """
    touched = conn.execute(
        sa.update(Lease)
        .where(Lease.trial_id == claim.trial_id, Lease.owner == claim.owner,
               Lease.generation == claim.generation, Lease.heartbeat_at != _RELEASED)
        .values(heartbeat_at=utcnow())
    ).rowcount
    if touched != 1:
        holder = conn.execute(sa.select(Lease.owner).where(Lease.trial_id == claim.trial_id))
        raise LeaseLost(claim.trial_id, holder.scalar())


class Leases:
    """This process's leases on trials of one database.

    ``owner`` (default: this process's own random id) lets a test act as another process.
    """

    def __init__(self, engine: sa.Engine, stale_after: float = STALE_AFTER_S,
                 owner: str | None = None, pid: int | None = None,
                 namespace: str | None = None) -> None:
        self.engine, self.stale_after = engine, stale_after
        self.host = socket.gethostname()[:128]
        self.pid = os.getpid() if pid is None else pid
        self.namespace = _namespace() if namespace is None else namespace
        self.owner = owner or f"{self.host}:{self.pid}:{_PROCESS_ID}"[-160:]
        self._seen: dict[int, _Seen] = {}  # what stale() saw

    def take(self, trial_id: int) -> Claim | None:
        """Hold a trial this process just asked; None when another worker got there first
        (it found the trial without a lease and claimed it)."""
        with self.engine.begin() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(sa.insert(Lease).values(**self._mine(), trial_id=trial_id,
                                                         generation=1))
                return Claim(trial_id, self.owner, 1)
            except sa.exc.IntegrityError:
                pass
            # A placeholder written by a worker that saw the trial before this lease: take it.
            row = conn.execute(
                sa.update(Lease)
                .where(Lease.trial_id == trial_id, Lease.owner == _PLACEHOLDER)
                .values(**self._mine(), generation=Lease.generation + 1)
                .returning(Lease.generation)
            ).first()
        return Claim(trial_id, self.owner, row.generation) if row else None

    def release(self, claim: Claim) -> None:
        """Let anyone resume this trial at once (the process stops without finishing it); the
        claim's fenced writes and beats are refused from now on."""
        with self.engine.begin() as conn:
            conn.execute(sa.update(Lease).where(Lease.trial_id == claim.trial_id,
                                                Lease.owner == claim.owner,
                                                Lease.generation == claim.generation)
                         .values(heartbeat_at=_RELEASED))

    def check(self, claim: Claim) -> None:
        """Raise :class:`~hpo.errors.LeaseLost` unless ``claim`` still holds (and beat it)."""
        with self.engine.begin() as conn:
            fence(conn, claim)

    def stale(self, study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        """The study's RUNNING trials whose holder is gone, oldest first."""
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        self._seen = {}
        if not running:
            return []
        ids = [t._trial_id for t in running]
        with self.engine.begin() as conn:
            leased = set(conn.execute(sa.select(Lease.trial_id)
                                      .where(Lease.trial_id.in_(ids))).scalars())
            for trial_id in set(ids) - leased:
                # Time the trial from now, by the database's clock (Optuna's datetime_start is
                # the asking process's local time). Losing this race to its asker is fine.
                with contextlib.suppress(sa.exc.IntegrityError), conn.begin_nested():
                    conn.execute(sa.insert(Lease).values(
                        trial_id=trial_id, owner=_PLACEHOLDER, host="", pid=0, namespace="",
                        generation=0, heartbeat_at=utcnow()))
            now = database_now(conn)
            leases = {row.trial_id: row for row in
                      conn.execute(sa.select(Lease).where(Lease.trial_id.in_(ids)))}
        limit = now - datetime.timedelta(seconds=self.stale_after)
        found = []
        for trial in running:
            lease = leases.get(trial._trial_id)
            if lease is None or (lease.owner == self.owner
                                 and lease.heartbeat_at != _RELEASED):
                continue
            if (lease.heartbeat_at == _RELEASED or lease.heartbeat_at < limit
                    or self._gone_here(lease)):
                self._seen[trial._trial_id] = _Seen(lease.generation, lease.heartbeat_at)
                found.append(trial)
        return sorted(found, key=lambda t: t.number)

    def _gone_here(self, lease: Lease) -> bool:
        """The holder ran on this machine, in this PID namespace, and its process is gone."""
        if not self.namespace or lease.namespace != self.namespace or lease.host != self.host:
            return False
        # Our own pid under another owner: an earlier process that had this pid has ended.
        return lease.pid == self.pid or _process_gone(lease.pid)

    def claim(self, trial_id: int) -> Claim | None:
        """Take over a trial that :meth:`stale` reported; None when another worker got it first
        or its holder beat meanwhile (the lease no longer holds what ``stale`` saw)."""
        seen = self._seen.pop(trial_id, None)
        if seen is None:
            return None
        with self.engine.begin() as conn:
            won = conn.execute(
                sa.update(Lease)
                .where(Lease.trial_id == trial_id, Lease.generation == seen.generation,
                       Lease.heartbeat_at == seen.heartbeat_at)
                .values(**self._mine(), generation=seen.generation + 1)
            ).rowcount
        return Claim(trial_id, self.owner, seen.generation + 1) if won == 1 else None

    @contextlib.contextmanager
    def heartbeat(self, claim: Claim, every: float = HEARTBEAT_S) -> Iterator[None]:
        """Refresh ``claim``'s lease every ``every`` seconds meanwhile; the thread has stopped
        when the block ends (so a late beat cannot undo a :meth:`release` that follows). A beat
        that finds the lease taken over stops beating: the next fenced write reports it."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every):
                try:
                    self.check(claim)
                except LeaseLost:
                    return
                except sa.exc.SQLAlchemyError:  # the database is away: the next beat retries
                    continue

        thread = threading.Thread(target=beat, name=f"hpo-heartbeat-{claim.trial_id}",
                                  daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _mine(self) -> dict:
        return {"owner": self.owner, "host": self.host, "pid": self.pid,
                "namespace": self.namespace, "heartbeat_at": utcnow()}
