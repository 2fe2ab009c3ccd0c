"""Runs the ``hpo`` command and kills its own process at a chosen point (a test helper).

``HPO_KILL_AT=POINT:N`` picks the N-th occurrence (counted from this process's start) of:

- ``epoch``: an epoch's metrics committed; SIGKILL at the next statement (a heartbeat, or the
  next epoch's write: that epoch trained and lost), not after a timer, whose margin depends on
  how fast the next epoch and the run's end are
- ``epoch-write``: an epoch's INSERT executed but not committed (a database write in flight)
- ``run-end``: a run's end committed; SIGKILL before the next statement (between seeds)
- ``trial-end``: Optuna's COMPLETE state of a trial committed; SIGKILL before the next
  statement (between trials)
- ``interrupt``: an epoch's metrics committed; SIGINT (Ctrl-C) at the next statement, the next
  epoch's write (its training done: compiled epochs of small runs take milliseconds, so a timer
  could fire in any later seed)
- ``stop``: SIGSTOP when a trial's epoch has ended (every run of it written, the pruner asked),
  outside any transaction of the training thread: the process freezes (every thread, its
  heartbeat too) until someone sends SIGCONT, as a suspended laptop or a stalled machine would.
  (A timer after a commit could freeze it inside the next write, whose lock would then block
  every SQLite writer: the runs of trials packed together are written back to back.)
- ``stop-in-write``: SIGSTOP inside an epoch's transaction, its INSERT executed but not committed
  (the lease row it fenced stays locked on PostgreSQL)

The kill is real (the kernel ends the process, nothing is flushed); the hooks only choose when.
"""

from __future__ import annotations

import os
import signal
import sys

import sqlalchemy as sa
from sqlalchemy.engine import Engine

POINT, _, COUNT = os.environ["HPO_KILL_AT"].partition(":")
COUNT = int(COUNT)
seen = 0
armed: int | None = None  # send this signal at the next statement: the arming commit is done


def _kill(sig: int = signal.SIGKILL) -> None:
    os.kill(os.getpid(), sig)


def _count() -> bool:
    global seen
    seen += 1
    return seen == COUNT


@sa.event.listens_for(Engine, "before_cursor_execute")
def _before(conn, cursor, statement, parameters, context, executemany):
    global armed
    if armed is not None:
        sig, armed = armed, None  # once: the Ctrl-C handler's own statements must run
        _kill(sig)


@sa.event.listens_for(Engine, "after_cursor_execute")
def _after(conn, cursor, statement, parameters, context, executemany):
    text = " ".join(statement.split()).upper()
    if text.startswith("INSERT INTO HPO_EPOCHS"):
        if POINT == "epoch-write" and _count():
            _kill()
        elif POINT == "stop-in-write" and _count():
            _kill(signal.SIGSTOP)
        conn.info["epoch"] = True
    elif text.startswith("UPDATE HPO_RUNS SET STATE"):
        conn.info["run-end"] = True
    elif text.startswith("UPDATE TRIALS SET STATE") and "COMPLETE" in repr(parameters):
        conn.info["trial-end"] = True


@sa.event.listens_for(Engine, "commit")
def _commit(conn):
    global armed
    marks = {key for key in ("epoch", "run-end", "trial-end") if conn.info.pop(key, False)}
    if POINT == "epoch" and "epoch" in marks and _count():
        armed = signal.SIGKILL
    elif POINT == "interrupt" and "epoch" in marks and _count():
        armed = signal.SIGINT
    elif POINT in ("run-end", "trial-end") and POINT in marks and _count():
        armed = signal.SIGKILL


if POINT == "stop":
    from hpo.objective import TrialSink

    _epoch_ended = TrialSink.epoch_ended

    def _stop_after(self, epoch: int) -> None:
        _epoch_ended(self, epoch)
        if _count():
            _kill(signal.SIGSTOP)

    TrialSink.epoch_ended = _stop_after


if __name__ == "__main__":
    from hpo.cli import main

    sys.exit(main(sys.argv[1:]))
