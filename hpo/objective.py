"""The objective of one Optuna trial: a configuration trained once per seed, and its sink.

:class:`Objective` samples the trial's configuration, reuses the runs a resumed trial finished
before, trains the other seeds, and turns the per-seed histories into the trial's value (the mean
over seeds of the reduced objective), its spread (user attributes) and its mean learning curve
(intermediate values).

While seeds train, the trainer reports to a :class:`TrialSink` (hpo's
:class:`~hpo.training.job.RunSink`), made of these parts, called in this order:

- :class:`RunRecording` writes each run's start, epochs and end to hpo's tables, every write
  fenced by the worker's claim on the trial (:mod:`hpo.store.lease`);
- :class:`EpochPruning` collects the objective per seed and, once every seed training now has
  ended an epoch, reports their mean to Optuna for that epoch, once, and asks the pruner;
- the display, a :class:`~hpo.progress.Progress`, whose methods carry the sink's names;
- :class:`ModelKeeping` (unless ``keep_models = "none"``) copies each run's model when it is
  trained and stores it (:mod:`hpo.kept_models`) just before the run is recorded COMPLETE.

Example (the pruning part alone, on a real study):
    >>> import os, tempfile, optuna
    >>> from hpo.store import Store
    >>> from hpo.store.lease import Leases
    >>> from hpo.store.recorder import Recorder
    >>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "o.db"), create=True)
    >>> trial = optuna.create_study(storage=store.optuna, direction="maximize").ask()
    >>> claim = Leases(store.engine).take(trial._trial_id)
    >>> recording = RunRecording(Recorder(store.engine), claim)
    >>> pruning = EpochPruning(trial, store.optuna, "val_accuracy", recording.hold)
    >>> pruning.run_epoch(0, 1, {"val_accuracy": 0.25})
    >>> pruning.run_epoch(1, 1, {"val_accuracy": 0.75})
    >>> pruning.epoch_ended(1)
    >>> pruning.run_epoch(2, 1, {"val_accuracy": 0.0})  # a later chunk of seeds ...
    >>> pruning.epoch_ended(1)  # ... finds epoch 1 reported: it is not judged again
    >>> store.optuna.get_trial(trial._trial_id).intermediate_values, pruning.stopping
    ({1: 0.5}, False)
    >>> store.dispose()
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import optuna

from hpo import interrupts
from hpo.config import ObjectiveSpec, Sweep, TrainSpec
from hpo.datasets.prepare import DataSource
from hpo.errors import LeaseLost, RunError
from hpo.kept_models import KEEPS_MODELS_ATTR, ModelKeeper, Snapshot, snapshot
from hpo.models import builders
from hpo.progress import Progress
from hpo.space import FunctionSpace
from hpo.stats import mean_curve, reduce_history, summarize
from hpo.store.lease import Claim
from hpo.store.recorder import Recorder
from hpo.study import (
    ERROR_ATTR,
    FAILED_SEEDS_ATTR,
    OBJECTIVES_ATTR,
    PRUNED_AT_ATTR,
    SEEDS_ATTR,
)
from hpo.training.dispatch import train_trials
from hpo.training.job import TrainingJob


@dataclass
class TrialWork:
    """One trial between :meth:`Objective.prepare` and :meth:`Objective.finish`."""

    trial: optuna.Trial
    job: TrainingJob
    seeds: tuple[int, ...]
    todo: list[int]  # the seeds to train (the others' runs are reused)
    histories: dict[int, dict]  # completed runs' histories by seed, reused or trained
    sink: TrialSink


class Objective:
    """Optuna's objective: sample a configuration, train it once per seed, aggregate.

    A resumed trial reuses the runs it finished (COMPLETE or FAIL) and trains only the others.
    ``storage`` is the study's Optuna storage (``Store.optuna``), which the objective reads the
    trial's reported epochs from and writes its mean curve to.

    Called as ``objective(trial, claim)`` it runs one trial; several trials trained together
    (packed across trials) go through :meth:`prepare` each, one :meth:`train` for all, and
    :meth:`finish` each.
    """

    def __init__(self, sweep: Sweep, data: DataSource, recorder: Recorder,
                 storage: optuna.storages.BaseStorage, progress: Progress,
                 keeper: ModelKeeper | None = None) -> None:
        self.sweep, self.data, self.recorder = sweep, data, recorder
        self.storage, self.progress, self.keeper = storage, progress, keeper
        self.build = builders.resolve(sweep.model.builder)

    def __call__(self, trial: optuna.Trial, claim: Claim) -> float:
        """Run ``trial`` under ``claim``; return its value, the mean over completed seeds.

        Raises:
            optuna.TrialPruned: the pruner stopped the trial (its runs are recorded PRUNED).
            RunError: fewer than ``protocol.min_repeats`` seeds completed.
            LeaseLost: another worker took the trial over; nothing more was written.
        """
        work = self.prepare(trial, claim)
        self.train([work])
        return self.finish(work)

    def prepare(self, trial: optuna.Trial, claim: Claim) -> TrialWork:
        """Sample ``trial``'s configuration and find the runs it finished before.

        Raises:
            RunError: the search space (a define-by-run function) raised for this trial.
        """
        sweep = self.sweep
        try:
            params = sweep.search.space.suggest(trial)
        except Exception as exc:
            if not isinstance(sweep.search.space, FunctionSpace):
                raise  # a table's suggestions raise only what Optuna or its database raise
            # a define-by-run space's own error, on this trial's branch
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            trial.set_user_attr(ERROR_ATTR, reason)
            raise RunError(f"trial {trial.number}: search.space raised {reason}") from exc
        model_params, spec = sweep.split_params(params)
        seeds = sweep.protocol.seeds
        trial.set_user_attr(SEEDS_ATTR, list(seeds))
        self.progress.trial_started(trial.number, params, spec.epochs)
        reused = self.recorder.finished_runs(trial._trial_id)
        if reused:
            self.progress.note(f"  reusing the finished runs of seeds {sorted(reused)}")
        recording = RunRecording(self.recorder, claim)
        prune_on = sweep.study.objective if sweep.search.pruner != "none" else None
        pruning = EpochPruning(trial, self.storage, prune_on, recording.hold)
        keeping = None
        if self.keeper is not None:
            trial.set_user_attr(KEEPS_MODELS_ATTR, True)
            keeping = ModelKeeping(self.keeper, trial, spec, recording.hold, self.progress)
        sink = TrialSink(recording, pruning, self.progress, trial.number, keeping)
        sink.errors.update({s: r.error or "failed" for s, r in reused.items() if r.state == "FAIL"})
        return TrialWork(
            trial=trial, job=TrainingJob(self.build, model_params, spec, self.data),
            seeds=seeds, todo=[s for s in seeds if s not in reused],
            histories={s: r.history for s, r in reused.items() if r.state == "COMPLETE"},
            sink=sink,
        )

    def train(self, works: Sequence[TrialWork]) -> None:
        """Train every trial's seeds still to train, trials packed together where they can be
        (:func:`~hpo.training.dispatch.train_trials`)."""
        todo = [work for work in works if work.todo]
        trained = train_trials([(w.job, w.todo, w.sink) for w in todo], self.sweep.protocol.pack)
        for work, histories in zip(todo, trained, strict=True):
            work.histories.update(histories)

    def finish(self, work: TrialWork) -> float | list[float]:
        """The trained trial's value (one per objective when there are several); its spread
        and mean curve are set on the trial.

        Raises what :meth:`__call__` documents.
        """
        sweep, trial, sink = self.sweep, work.trial, work.sink
        if sink.lost is not None:
            raise sink.lost
        objective = sweep.study.objective
        pruned_at = sink.pruning.pruned_at
        if pruned_at is not None:
            trial.set_user_attr(PRUNED_AT_ATTR, pruned_at)
            raise optuna.TrialPruned(f"mean {objective} at epoch {pruned_at}")
        if sink.errors:
            trial.set_user_attr(FAILED_SEEDS_ATTR, sorted(sink.errors))
        seeds, histories = work.seeds, work.histories
        completed = [s for s in seeds if s in histories]
        if len(completed) < sweep.protocol.min_repeats:
            first = sink.errors[min(sink.errors)]
            trial.set_user_attr(ERROR_ATTR, first)
            raise RunError(
                f"trial {trial.number}: {len(completed)} of {len(seeds)} runs completed, "
                f"fewer than protocol.min_repeats = {sweep.protocol.min_repeats}; "
                f"first failure: {first}"
            )
        summaries = [summarize(self._per_seed(work, spec, completed))
                     for spec in sweep.study.objectives]
        for key, value in summaries[0].as_dict().items():
            trial.set_user_attr(key, value)
        if len(summaries) > 1:
            trial.set_user_attr(OBJECTIVES_ATTR, [
                {"metric": spec.metric, "direction": spec.direction, **summary.as_dict()}
                for spec, summary in zip(sweep.study.objectives, summaries, strict=True)])
        elif objective in sweep.history_keys and not objective.startswith("test_"):
            # the mean curve (test_* is measured once, after training; run measures once a run)
            self._set_mean_curve(trial, [histories[s][objective] for s in completed])
        self.progress.trial_finished(trial.number, summaries[0])
        means = [summary.mean for summary in summaries]
        return means[0] if len(means) == 1 else means

    def _per_seed(self, work: TrialWork, spec: ObjectiveSpec, seeds: list[int]) -> list[float]:
        """One objective's value for each completed seed: its history reduced, or a run
        measure (:data:`hpo.config.RUN_MEASURES`)."""
        if spec.metric == "params":
            return [float(self._trainable_params(work.job))] * len(seeds)
        if spec.metric == "epoch_seconds":
            times = self.recorder.wall_times(work.trial._trial_id)
            return [math.nan if times[s][0] is None else times[s][0] / times[s][1]
                    for s in seeds]
        return [reduce_history(work.histories[s][spec.metric], spec.reduce, spec.direction)
                for s in seeds]

    def _trainable_params(self, job: TrainingJob) -> int:
        """The trainable parameters of the trial's model (built once more: a resumed trial's
        reused seeds have no model in this process)."""
        model = job.build(self.data.input_shape, self.data.n_classes, **job.model_params)
        return int(sum(math.prod(w.shape) for w in model.trainable_weights))

    def _set_mean_curve(self, trial: optuna.Trial, curves: list[list[float]]) -> None:
        """Make the trial's intermediate values its mean curve over *all* completed seeds,
        replacing what the pruner was shown while they trained (the first chunk's seeds when
        seeds train in several chunks), so later trials are judged against full means."""
        for epoch, value in enumerate(mean_curve(curves), start=1):
            if math.isfinite(value):
                self.storage.set_trial_intermediate_value(trial._trial_id, epoch, value)


class RunRecording:
    """The recording part of a trial's sink: each run's rows in hpo's tables.

    Every write is one committed transaction fenced by ``claim``: a worker whose trial was taken
    over gets :class:`~hpo.errors.LeaseLost` from its next write, and writes nothing.
    """

    def __init__(self, recorder: Recorder, claim: Claim) -> None:
        self.recorder, self.claim = recorder, claim
        self.run_ids: dict[int, int] = {}  # seed -> its run's id

    def run_started(self, seed: int) -> None:
        """Insert the seed's run, RUNNING (replacing an unfinished earlier attempt)."""
        self.run_ids[seed] = self.recorder.start_run(self.claim, seed)

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        """Commit every metric of the seed's finished ``epoch``."""
        self.recorder.record_epoch(self.claim, self.run_ids[seed], epoch, logs)

    def run_finished(self, seed: int, state: str, error: str | None,
                     model: tuple[str, int] | None = None, ended: float | None = None) -> None:
        """Mark the seed's run ``state`` (COMPLETE, FAIL or PRUNED) with its error, and record
        its kept ``model`` (artifact id, epoch) in the same transaction; ``ended`` is when its
        training ended (``time.perf_counter``; default now)."""
        self.recorder.finish_run(self.claim, self.run_ids[seed], state, error, model, ended)

    def hold(self) -> None:
        """Raise :class:`~hpo.errors.LeaseLost` unless the claim still holds the trial: the
        check before a write outside hpo's tables (Optuna's)."""
        self.recorder.hold(self.claim)


class EpochPruning:
    """The pruning part of a trial's sink: what the pruner is shown, and its verdict.

    When the trainer ends an epoch, the mean objective over the seeds it is training then (their
    finite values) is reported for that epoch, once. Packed with ``pack >= repeats`` (the
    default where they fit) that is every seed; with smaller packs it is the first chunk's seeds
    and with ``pack = false`` the first seed alone (later chunks find their epochs reported and
    are not judged). Epochs a resumed trial reported before its worker stopped are not
    reported again. ``prune_on`` None (no pruner) reports nothing. ``hold`` raises
    :class:`~hpo.errors.LeaseLost` unless this worker still holds the trial; it is called before
    each report, since Optuna's writes are not fenced.
    """

    def __init__(self, trial: optuna.Trial, storage: optuna.storages.BaseStorage,
                 prune_on: str | None, hold: Callable[[], None]) -> None:
        self.trial, self.prune_on, self.hold = trial, prune_on, hold
        self.values: dict[int, dict[int, float]] = {}  # epoch -> seed -> objective value
        self.pruned_at: int | None = None
        # Read once here and kept up to date below, so that no epoch pays a database read.
        self.reported = set(storage.get_trial(trial._trial_id).intermediate_values)

    @property
    def stopping(self) -> bool:
        """True once the pruner stopped the trial."""
        return self.pruned_at is not None

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        """Keep the seed's objective value for ``epoch``."""
        if self.prune_on is not None and self.prune_on in logs:
            self.values.setdefault(epoch, {})[seed] = logs[self.prune_on]

    def epoch_ended(self, epoch: int) -> None:
        """Report the mean for ``epoch`` unless it is reported already (or has no finite
        value), and ask the pruner.

        Raises:
            LeaseLost: another worker holds the trial, or took it over and finished it.
        """
        values = [v for v in self.values.get(epoch, {}).values() if math.isfinite(v)]
        if not values or epoch in self.reported:
            return
        self.hold()
        try:
            self.trial.report(sum(values) / len(values), epoch)
            pruned = self.trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError as exc:
            # Another worker took the trial over and finished it: not this run's failure.
            raise LeaseLost(self.trial._trial_id, None) from exc
        self.reported.add(epoch)
        if pruned:
            self.pruned_at = epoch


class ModelKeeping:
    """The kept-models part of a trial's sink (:mod:`hpo.kept_models`): each run's model at its
    end, copied when the trainer hands it over and uploaded when the run ends COMPLETE.

    ``hold`` raises :class:`~hpo.errors.LeaseLost` unless this worker still holds the trial; it
    is called before each upload, since Optuna's writes are not fenced.
    """

    def __init__(self, keeper: ModelKeeper, trial: optuna.Trial, spec: TrainSpec,
                 hold: Callable[[], None], display: Progress) -> None:
        self.keeper, self.trial, self.spec, self.hold = keeper, trial, spec, hold
        self.display = display
        self.snapshots: dict[int, Snapshot] = {}
        self.copy = None  # the compiled copy the trial's runs are saved through

    def run_trained(self, seed: int, epoch: int, model) -> None:
        """Copy the run's weights: a packed replica's may change after its run ended."""
        self.snapshots[seed] = snapshot(model, epoch)

    def upload(self, seed: int) -> tuple[str, int] | None:
        """Store the seed's model: (artifact id, epoch), or None when there is none or it
        cannot be saved (a model Keras cannot clone or save loses its file, not its run)."""
        kept = self.snapshots.pop(seed, None)
        if kept is None:
            return None
        self.hold()
        try:
            artifact, self.copy = self.keeper.upload(self.trial, seed, kept, self.spec,
                                                     self.copy)
            return artifact, kept.epoch
        except Exception as exc:  # the user's model may not serialize; the run stays recorded
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            self.display.note(f"  seed {seed}: its model was not kept ({reason})")
            return None


class TrialSink:
    """One trial's :class:`~hpo.training.job.RunSink`: recording, then pruning, then display.

    A run ends FAIL when it has an error, else PRUNED once the pruner stopped the trial, else
    COMPLETE. ``errors`` holds the failed runs' errors by seed (the objective adds the failed
    runs a resumed trial reuses).

    A :class:`~hpo.errors.LeaseLost` from any part is kept in ``lost`` instead of raised: the
    trial then writes and shows nothing more and is :attr:`stopping`, so its runs end at once
    while runs of other trials packed with it train on; :meth:`Objective.finish` raises it.
    """

    def __init__(self, recording: RunRecording, pruning: EpochPruning, display: Progress,
                 number: int | None = None, keeping: ModelKeeping | None = None) -> None:
        self.recording, self.pruning, self.display = recording, pruning, display
        self.number = number  # the trial's, for the display
        self.keeping = keeping
        self.trained_at: dict[int, float] = {}  # seed -> when its training ended (perf_counter)
        self.errors: dict[int, str] = {}
        self.lost: LeaseLost | None = None

    @property
    def stopping(self) -> bool:
        """True once the pruner stopped the trial or the worker lost it: the trainer ends its
        runs and starts no more."""
        return self.lost is not None or self.pruning.stopping

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        try:
            yield
        except LeaseLost as exc:
            self.lost = exc

    def run_started(self, seed: int) -> None:
        """A run of ``seed`` starts: record it, then show it."""
        if self.lost is None:
            with self._held():
                self.recording.run_started(seed)
                self.display.run_started(seed, trial=self.number)

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        """The run of ``seed`` finished ``epoch`` with ``logs``: record, keep, show."""
        if self.lost is None:
            with self._held():
                self.recording.run_epoch(seed, epoch, logs)
                self.pruning.run_epoch(seed, epoch, logs)
                self.display.run_epoch(seed, epoch, logs, trial=self.number)

    def epoch_ended(self, epoch: int) -> None:
        """Every run being trained has reported ``epoch``: the pruner's turn (and a Ctrl-C's
        that Python dropped, :mod:`hpo.interrupts`)."""
        interrupts.check()
        if self.lost is None:
            with self._held():
                self.pruning.epoch_ended(epoch)

    def run_trained(self, seed: int, epoch: int, model) -> None:
        """The run of ``seed`` ends with ``model``'s weights (of ``epoch``): its training time
        ends here (saving its model is not training), and the model is kept if models are."""
        self.trained_at[seed] = time.perf_counter()
        if self.lost is None and self.keeping is not None:
            self.keeping.run_trained(seed, epoch, model)

    def run_finished(self, seed: int, error: str | None) -> None:
        """The run of ``seed`` ended, with ``error`` if it failed: store its model if it
        completed and models are kept, record its state (and the model), show it."""
        if self.lost is not None:
            return
        state = "FAIL" if error else "PRUNED" if self.stopping else "COMPLETE"
        with self._held():
            ended = self.trained_at.pop(seed, None)
            model = None
            if state == "COMPLETE" and self.keeping is not None:
                model = self.keeping.upload(seed)
            self.recording.run_finished(seed, state, error, model, ended)
            if error:
                self.errors[seed] = error
            self.display.run_finished(seed, error, trial=self.number)
