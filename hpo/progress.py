"""The progress display of ``hpo run``: a rich bar on a terminal, plain lines otherwise.

Both show trial k/n, seed i/repeats, epoch e/epochs and the ETA, from the same counts. A display
is the last part of a trial's sink (:class:`hpo.objective.TrialSink`): ``run_started``,
``run_epoch`` and ``run_finished`` carry the names and arguments of the trainer's
:class:`~hpo.training.job.RunSink`; the runner and the objective call the others.

Example:
    >>> import io
    >>> from hpo.sweep import parse_sweep
    >>> sweep = parse_sweep('''
    ... [study]
    ... name = "doc"
    ... direction = "maximize"
    ... [data]
    ... dataset = "mnist"
    ... [model]
    ... builder = "mlp"
    ... [train]
    ... epochs = 1
    ... [protocol]
    ... repeats = 1
    ... ''')
    >>> shown = io.StringIO()
    >>> lines = LineProgress(shown)
    >>> lines.sweep_started(sweep, remaining=1, finished=0)
    >>> lines.trial_started(0, {"width": 4}, epochs=1)
    >>> lines.run_started(seed=0)
    >>> lines.run_epoch(0, 1, {"val_accuracy": 0.5})
    >>> lines.run_finished(0, None)
    >>> print(shown.getvalue(), end="")
    study doc: 0 trials finished before, 1 to run × 1 seeds × 1 epochs
    trial 1/1 (#0): width=4
      trial 1/1 (#0) seed=0 done (1/1 seeds): val_accuracy=0.5000 ETA 0:00:00
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from hpo.config import Sweep
    from hpo.stats import Summary


# Epoch reports closer together than this are one burst: a pack's replicas ending one epoch.
BURST_S = 0.05


class Progress:
    """Counts what the runner reports; subclasses render it. Does nothing by itself.

    Calls come in this order: ``sweep_started``; per trial ``trial_started``, then per run
    ``run_started``, ``run_epoch`` per epoch and ``run_finished`` (packed runs interleave), then
    ``trial_finished``; ``note`` at any time; ``sweep_finished`` last. Trials packed together
    all start before their runs, whose calls then name their trial (``trial=number``).
    """

    def sweep_started(self, sweep: Sweep, remaining: int, finished: int) -> None:
        """The runner starts: ``remaining`` trials to run, ``finished`` finished before."""
        self.sweep, self.remaining, self.finished_before = sweep, remaining, finished
        self.repeats = sweep.protocol.repeats
        self.total_epochs = max(1, remaining * sweep.protocol.repeats * sweep.train.epochs)
        self.done_epochs = 0
        self.trial_index = 0
        self.seed_index = 0
        self.epoch, self.epochs = 0, sweep.train.epochs
        self.last_logs: dict[tuple[int | None, int], dict[str, float]] = {}
        self.started = time.monotonic()
        self._trials: dict[int, list[int]] = {}  # trial number -> [index, seed_index, epochs]
        self._running: dict[int | None, set[int]] = {}  # trial -> seeds started, not finished
        # The pace is measured between ends of bursts of epoch reports (a pack reports all its
        # replicas' epochs at once), from the end of the first: the time before it (loading the
        # data, tracing and compiling) is spent once, not per epoch.
        self._last_report: float | None = None
        # The first and the latest burst ended: (time of its last report, epochs done then).
        self._bursts: list[tuple[float, int]] = []
        self._shown_trial: int | None = None
        self._run_epochs: dict[tuple[int | None, int], int] = {}  # (trial, seed) -> last epoch

    def trial_started(self, number: int, params: Mapping[str, Any], epochs: int) -> None:
        """Trial ``number`` starts with ``params``; each of its runs trains ``epochs`` epochs."""
        self.trial_index += 1
        self.trial_number, self.params, self.seed_index = number, dict(params), 0
        self.epochs = epochs
        self._trials[number] = [self.trial_index, 0, epochs]

    def _focus(self, trial: int | None) -> None:
        """Show trial ``trial``'s position (runs of trials packed together interleave)."""
        self._shown_trial = trial
        if trial is not None and trial in self._trials:
            self.trial_number = trial
            self.trial_index, self.seed_index, self.epochs = self._trials[trial]

    def run_started(self, seed: int, trial: int | None = None) -> None:
        """The run of ``seed`` (of trial ``trial``, else the last started) starts."""
        self._focus(trial)
        self.seed_index += 1
        if self.trial_number in self._trials:
            self._trials[self.trial_number][1] = self.seed_index
        self._running.setdefault(trial, set()).add(seed)
        self.seed, self.epoch = seed, 0

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float],
                  trial: int | None = None) -> None:
        """The run of ``seed`` finished ``epoch`` (from 1) with ``logs``."""
        self._focus(trial)
        self.epoch, self.logs = epoch, dict(logs)
        self.last_logs[trial, seed] = self.logs  # packed seeds finish together: each its own
        self._run_epochs[trial, seed] = epoch
        now = time.monotonic()
        if self._last_report is not None and now - self._last_report > BURST_S:
            ended = (self._last_report, self.done_epochs)  # the burst before this report
            self._bursts = [self._bursts[0] if self._bursts else ended, ended]
        self._last_report = now
        self.done_epochs += 1

    def run_finished(self, seed: int, error: str | None, trial: int | None = None) -> None:
        """The run of ``seed`` ended, with ``error`` if it failed."""
        self._focus(trial)
        self._running.get(trial, set()).discard(seed)
        # A run that stopped early (pruned, early stopping, failed) skips the rest of its epochs.
        self.done_epochs += self.epochs - self._run_epochs.pop((trial, seed), 0)

    def trial_finished(self, number: int, summary: Summary) -> None:
        """Trial ``number`` completed with ``summary`` over its seeds."""

    def note(self, text: str) -> None:
        """A one-line event: a resumed, pruned, failed or skipped trial."""

    def sweep_finished(self) -> None:
        """The runner stops (also on an error or Ctrl-C)."""

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the pace measured from the end of the first burst of epoch reports to
        the end of the latest (a burst: the epochs a pack reports at once, or one run's epoch);
        the start-up before the first, compiling included, is not an epoch's cost. None until
        two bursts have ended (one-epoch runs: at the pace since the start, once one has)."""
        if self._bursts and self._bursts[-1][1] > self._bursts[0][1]:
            (start, done_then), (end, done_now) = self._bursts[0], self._bursts[-1]
        elif self.sweep.train.epochs == 1 and self.done_epochs:
            (start, done_then), (end, done_now) = (self.started, 0), (time.monotonic(),
                                                                      self.done_epochs)
        else:
            return None
        pace = (end - start) / (done_now - done_then)
        return pace * max(0, self.total_epochs - self.done_epochs)

    def position(self) -> str:
        """Where the sweep is: trial, seed and epoch, each of its total. Seeds trained together
        (a pack) show as a range: ``seeds 1-3/3``."""
        together = len(self._running.get(self._shown_trial, ()))
        seeds = (f"seeds {self.seed_index - together + 1}-{self.seed_index}" if together > 1
                 else f"seed {self.seed_index}")
        return (
            f"trial {self.trial_index}/{self.remaining} (#{self.trial_number}) "
            f"{seeds}/{self.repeats} epoch {self.epoch}/{self.epochs}"
        )


NullProgress = Progress


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes, s = divmod(int(seconds), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


class LineProgress(Progress):
    """Plain lines for logs and pipes: one per finished run, at most one per ``every_s`` else."""

    def __init__(self, stream: TextIO | None = None, every_s: float = 10.0,
                 label: str = "") -> None:
        self.stream = stream or sys.stdout
        self.every_s, self._last = every_s, 0.0
        self.prefix = f"[{label}] " if label else ""  # which worker, when several share a log

    def _print(self, text: str) -> None:
        print(self.prefix + text, file=self.stream, flush=True)

    def sweep_started(self, sweep: Sweep, remaining: int, finished: int) -> None:
        super().sweep_started(sweep, remaining, finished)
        self._print(
            f"study {sweep.study.name}: {finished} trials finished before, {remaining} to run "
            f"× {sweep.protocol.repeats} seeds × {sweep.train.epochs} epochs"
        )

    def trial_started(self, number: int, params: Mapping[str, Any], epochs: int) -> None:
        super().trial_started(number, params, epochs)
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "no parameters"
        self._print(f"trial {self.trial_index}/{self.remaining} (#{number}): {shown}")

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float],
                  trial: int | None = None) -> None:
        super().run_epoch(seed, epoch, logs, trial)
        now = time.monotonic()
        if now - self._last >= self.every_s and epoch < self.epochs:
            self._last = now
            self._print(f"  {self.position()} ETA {_clock(self.eta_s)}")

    def run_finished(self, seed: int, error: str | None, trial: int | None = None) -> None:
        super().run_finished(seed, error, trial)
        objective = self.sweep.study.objective
        if error:
            outcome = f"FAILED: {error}"
        else:
            value = self.last_logs.get((trial, seed), {}).get(objective, float("nan"))
            outcome = f"{objective}={value:.4f}"
        done = self.seed_index - len(self._running.get(trial, ()))
        self._print(f"  trial {self.trial_index}/{self.remaining} (#{self.trial_number}) "
                    f"seed={seed} done ({done}/{self.repeats} seeds): {outcome} "
                    f"ETA {_clock(self.eta_s)}")

    def trial_finished(self, number: int, summary: Summary) -> None:
        spread = f" ± {summary.std:.4f}" if summary.std is not None else ""
        self._print(f"trial #{number}: mean {summary.mean:.4f}{spread} (n={summary.n})")

    def note(self, text: str) -> None:
        self._print(text)


class RichProgress(Progress):
    """A live bar on a terminal (rich), with the position and the ETA."""

    def sweep_started(self, sweep: Sweep, remaining: int, finished: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bar

        super().sweep_started(sweep, remaining, finished)
        self.bar = Bar(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("epochs"), TimeElapsedColumn(), TextColumn("ETA {task.fields[eta]}"),
        )
        self.task = self.bar.add_task(f"study {sweep.study.name}", total=self.total_epochs,
                                      eta=_clock(None))
        self.bar.start()

    def _update(self) -> None:
        self.bar.update(self.task, completed=self.done_epochs, description=self.position(),
                        eta=_clock(self.eta_s))

    def run_started(self, seed: int, trial: int | None = None) -> None:
        super().run_started(seed, trial)
        self._update()

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float],
                  trial: int | None = None) -> None:
        super().run_epoch(seed, epoch, logs, trial)
        self._update()

    def run_finished(self, seed: int, error: str | None, trial: int | None = None) -> None:
        super().run_finished(seed, error, trial)
        if error:
            self.bar.console.print(f"[red]seed {seed} failed:[/red] {error}")
        self._update()

    def trial_finished(self, number: int, summary: Summary) -> None:
        spread = f" ± {summary.std:.4f}" if summary.std is not None else ""
        self.bar.console.print(f"trial #{number}: mean {summary.mean:.4f}{spread} (n={summary.n})")

    def note(self, text: str) -> None:
        self.bar.console.print(text)

    def sweep_finished(self) -> None:
        self.bar.stop()


def for_stream(stream: TextIO | None = None) -> Progress:
    """A rich display when ``stream`` (default stdout) is a terminal, else plain lines."""
    stream = stream or sys.stdout
    return RichProgress() if stream.isatty() else LineProgress(stream)
