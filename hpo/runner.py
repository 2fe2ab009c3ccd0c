"""The study runner: create or resume the Optuna study, and the objective that runs the protocol.

One Optuna trial per configuration; inside it, one seeded run per ``protocol`` seed, recorded epoch
by epoch. The trial's value is the mean over seeds of the reduced objective, with its spread as
user attributes and the mean learning curve as intermediate values.

Every ``hpo run`` or ``hpo worker`` process runs the same loop: first complete any stale trial
(its holder was killed: see :mod:`hpo.store.lease`), reusing the seeds it finished; else ask
Optuna for a new trial while the study holds fewer than its target. Several processes, on one
machine or many, can therefore share one study.

Example:
    >>> import os, tempfile
    >>> from hpo.sweep import parse_sweep
    >>> sweep = parse_sweep('''
    ... [study]
    ... name = "doc"
    ... direction = "maximize"
    ... [data]
    ... dataset = "mnist"
    ... limit_train = 64
    ... limit_test = 32
    ... [model]
    ... builder = "mlp"
    ... width = 4
    ... [train]
    ... epochs = 1
    ... [protocol]
    ... repeats = 2
    ... ''')
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "doc.db")
    >>> study = run_sweep(sweep, storage=url)  # doctest: +SKIP
    >>> study.best_trial.user_attrs["n"]  # doctest: +SKIP
    2
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping

import optuna

from hpo.config import Sweep
from hpo.datasets import loaders
from hpo.datasets.prepare import DataSource
from hpo.errors import LeaseLost, RunError, SweepError
from hpo.progress import NullProgress, Progress
from hpo.stats import mean_curve, reduce_history, summarize
from hpo.store import Store
from hpo.store.lease import Claim, Leases
from hpo.store.recorder import Recorder
from hpo.training.dispatch import train
from hpo.training.solo import TrainingJob

SWEEP_ATTR = "hpo.sweep"  # study user attribute: the sweep's identity, checked on resume
SKIPPED_ATTR = "hpo.skipped"  # trial user attribute: a grid point another trial already holds
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)


def run_sweep(
    sweep: Sweep,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    progress: Progress | None = None,
) -> optuna.Study:
    """Run ``sweep`` until its study holds ``n_trials`` trials (default: the sweep's).

    Re-running a sweep continues its study: stale trials (their process was killed) are
    completed, reusing their finished seeds; a finished grid runs nothing more. A study of the
    same name whose stored settings differ is refused with :class:`~hpo.errors.SweepError`.
    """
    progress = progress or NullProgress()
    data = load_data(sweep)  # before the database: a missing data file must change nothing
    check_builder(sweep, data)
    store = Store.open(storage or sweep.storage_url, create=True)
    try:
        study = open_study(sweep, store)
        target = n_trials if n_trials is not None else sweep.n_trials
        if isinstance(study.sampler, optuna.samplers.GridSampler):
            target = min(target, sweep.search.space.grid_size())
        leases = Leases(store.engine)
        objective = Objective(sweep, data, Recorder(store.engine), progress)
        finished = len(_counted(study, FINISHED))
        progress.sweep_started(sweep, max(0, target - finished), finished)
        try:
            while (next_trial := _next_trial(study, leases, target, progress)) is not None:
                _run_trial(study, *next_trial, objective, leases, progress)
        finally:
            progress.sweep_finished()
        return study
    finally:
        store.dispose()


def prepare_study(sweep: Sweep, storage: str | None = None) -> None:
    """Create the sweep's database and study (or check the existing one) and train nothing:
    workers started next all join the same study."""
    store = Store.open(storage or sweep.storage_url, create=True)
    try:
        open_study(sweep, store)
    finally:
        store.dispose()


def _counted(study: optuna.Study, states) -> list[optuna.trial.FrozenTrial]:
    """The study's trials in ``states``, leaving out skipped grid duplicates."""
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if SKIPPED_ATTR not in t.user_attrs]


def _next_trial(study: optuna.Study, leases: Leases, target: int,
                progress: Progress) -> tuple[optuna.Trial, Claim] | None:
    """A stale trial to complete, else a new trial while the study is short of ``target``."""
    while True:
        for stale in leases.stale(study):
            claim = leases.claim(stale._trial_id)
            if claim is not None:
                progress.note(f"resuming trial #{stale.number} (its worker stopped)")
                return optuna.Trial(study, stale._trial_id), claim
        started = _counted(study, (*FINISHED, optuna.trial.TrialState.RUNNING))
        sampler = study.sampler
        if len(started) >= target or (
            isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study)
        ):
            return None
        trial = study.ask()
        claim = leases.take(trial._trial_id)
        if claim is not None:
            return trial, claim
        # Another worker found it without a lease and claimed it before this one could: theirs.
        progress.note(f"trial #{trial.number} was taken by another worker; asking again")


def _run_trial(study: optuna.Study, trial: optuna.Trial, claim: Claim, objective: Objective,
               leases: Leases, progress: Progress) -> None:
    """Run one trial under a heartbeat and tell Optuna how it ended.

    Ctrl-C (or any error of hpo itself) leaves the trial RUNNING with its lease released and
    its runs in flight INTERRUPTED: the next ``hpo run`` resumes it. A worker whose trial was
    taken over (it was frozen past the stale limit) writes nothing more for it, says so in one
    line and goes on with other work.
    """
    holder = _grid_holder(study, trial)
    if holder is not None:
        trial.set_user_attr(SKIPPED_ATTR, f"grid point of trial {holder}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        progress.note(f"trial #{trial.number} skipped: its grid point is trial #{holder}'s")
        return
    try:
        with leases.heartbeat(claim):
            try:
                value, state = objective(trial, claim), optuna.trial.TrialState.COMPLETE
            except optuna.TrialPruned as exc:
                value, state = None, optuna.trial.TrialState.PRUNED
                progress.note(f"trial #{trial.number} pruned: {exc}")
            except RunError as exc:
                value, state = None, optuna.trial.TrialState.FAIL
                progress.note(f"trial #{trial.number} failed: {exc}")
            # Fenced as every write: a worker frozen since its last run does not tell. One that
            # froze between this check and the tell finds the trial told by its new holder
            # (skipped), or tells first, from the same recorded runs; either way the check
            # after the tell says whether the trial was still this worker's.
            leases.check(claim)
            study.tell(trial, value, state=state, skip_if_finished=True)
            leases.check(claim)
    except (LeaseLost, optuna.exceptions.UpdateFinishedTrialError) as exc:
        # Lost the lease (nothing of ours to mark: the fence refuses), or still holding it
        # while another worker finished the trial (mark what this one had in flight).
        with contextlib.suppress(LeaseLost):
            objective.recorder.interrupt_runs(claim)
        holder = exc.holder if isinstance(exc, LeaseLost) else None
        progress.note(f"trial #{trial.number} was taken over by {holder or 'another worker'}; "
                      "dropping its in-flight runs")
    except BaseException:
        with contextlib.suppress(LeaseLost):  # taken over meanwhile: nothing of ours to mark
            objective.recorder.interrupt_runs(claim)
            leases.release(claim)
        raise


def _grid_holder(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial holding this trial's grid point, if any.

    Optuna's GridSampler gives trial k grid point k; a trial past the grid (several workers
    asking at once near the end) gets a point another trial holds, and is not trained.
    """
    if not isinstance(study.sampler, optuna.samplers.GridSampler):
        return None
    trials = study.get_trials(deepcopy=False)
    grid_id = next(t.system_attrs.get("grid_id") for t in trials if t.number == trial.number)
    holders = [t.number for t in trials if t.number < trial.number
               and t.system_attrs.get("grid_id") == grid_id and SKIPPED_ATTR not in t.user_attrs
               and t.state != optuna.trial.TrialState.WAITING]
    return min(holders) if holders else None


def load_data(sweep: Sweep) -> DataSource:
    """Load and prepare the sweep's dataset; loader failures are the user's to fix (exit 2)."""
    load = loaders.resolve(sweep.data.dataset)
    try:
        arrays = load()
    except Exception as exc:  # loaders fail in many ways (Keras' download raises Exception)
        reason = " ".join(str(exc).split())
        raise SweepError(
            f"data.dataset = {sweep.data.dataset!r}: cannot load ({reason}); "
            "for offline data set HPO_DATA_DIR (see README)"
        ) from exc
    return DataSource(arrays, sweep.data)


def check_builder(sweep: Sweep, data: DataSource) -> None:
    """Build the model at every value of every searched builder parameter, the others at their
    first value, before anything is written: a builder that raises or returns something else
    than a Keras model is the sweep's error (exit 2), not a run-time failure of every trial."""
    import keras

    from hpo.models import builders

    build = builders.resolve(sweep.model.builder)
    tried = set()
    for params in sweep.search.space.edge_points():
        model_params, _ = sweep.split_params(params)
        if repr(model_params) in tried:  # the point differs only in training settings
            continue
        tried.add(repr(model_params))
        keras.backend.clear_session()
        try:
            model = build(data.input_shape, data.n_classes, **model_params)
        except Exception as exc:  # the user's builder may raise anything
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise SweepError(
                f"model.builder = {sweep.model.builder!r} with {model_params}: it raised "
                f"{reason}; fix the value or the builder"
            ) from exc
        if not isinstance(model, keras.Model):
            raise SweepError(
                f"model.builder = {sweep.model.builder!r} with {model_params}: it returned "
                f"{type(model).__name__}; expected a keras.Model"
            )
    keras.backend.clear_session()


def make_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``[search] sampler``, seeded."""
    seed = sweep.search.seed if sweep.search.seed is not None else sweep.protocol.seed
    name = sweep.search.sampler
    if name == "grid":
        return _GridSampler(sweep.search.space.grid(), seed=seed)
    samplers = {
        "random": optuna.samplers.RandomSampler,
        "tpe": optuna.samplers.TPESampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "qmc": optuna.samplers.QMCSampler,
    }
    return samplers[name](seed=seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` after the last point: that works only
    inside ``study.optimize``, and hpo's own loop (ask and tell) checks ``is_exhausted`` itself."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    """The Optuna pruner named by ``[search] pruner``; it judges the mean curve over seeds.

    Median: a trial stops when its mean is worse than the median of earlier trials at the same
    epoch, after 3 finished trials and from epoch 3 on (the first epochs are too noisy to judge).
    Hyperband and successive halving count epochs as their resource.
    """
    epochs = sweep.train.epochs
    return {
        "none": optuna.pruners.NopPruner,
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=3),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1,
                                                            max_resource=epochs),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
    }[sweep.search.pruner]()


def open_study(sweep: Sweep, store: Store) -> optuna.Study:
    """Create the sweep's study, or load it after checking it is the same experiment.

    Workers starting together may race to create it: the losers load the winner's study.
    """
    name, sampler, pruner = sweep.study.name, make_sampler(sweep), make_pruner(sweep)
    identity = json.loads(json.dumps(sweep.identity()))  # as stored: tuples become lists
    try:
        store.optuna.get_study_id_from_name(name)
    except KeyError:
        try:
            study = optuna.create_study(
                study_name=name, storage=store.optuna, sampler=sampler, pruner=pruner,
                direction=sweep.study.direction,
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago
        else:
            study.set_user_attr(SWEEP_ATTR, identity)
            return study
    study = optuna.load_study(study_name=name, storage=store.optuna, sampler=sampler,
                              pruner=pruner)
    stored_direction = study.direction.name.lower()
    if stored_direction != sweep.study.direction:
        raise SweepError(
            f"study.direction = {sweep.study.direction!r}: study {name!r} in {store.url} "
            f"was created with {stored_direction!r}; use another study name or storage"
        )
    stored = study.user_attrs.get(SWEEP_ATTR)
    if stored is None and not study.get_trials(deepcopy=False):
        # Created by a worker that has not yet written the identity, or by hand: adopt it.
        study.set_user_attr(SWEEP_ATTR, identity)
        stored = identity
    if stored is None:
        raise SweepError(
            f"study.name = {name!r}: a study of that name in {store.url} was not made by hpo; "
            "use another study name or storage"
        )
    difference = _first_difference(stored, identity)
    if difference:
        key, old, new = difference
        was = ("was made by an earlier hpo that did not record it" if old is _UNRECORDED
               else f"was run with {old!r}")
        raise SweepError(
            f"{key} = {new!r}: study {name!r} in {store.url} {was}; "
            "use another study.name (or storage) rather than mixing two experiments"
        )
    return study


_UNRECORDED = object()  # a setting missing from a stored identity


def _first_difference(old: object, new: object) -> tuple | None:
    """The first setting whose stored value differs, preferring one the study recorded over
    one it did not (a pruner changed names ``search.pruner``, not the ``protocol.pack`` that
    comes into the identity with it)."""
    found = list(_differences(old, new))
    recorded = [d for d in found if d[1] is not _UNRECORDED]
    return (recorded or found or [None])[0]


def _differences(old: object, new: object, path: str = ""):
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key, _UNRECORDED), new.get(key),
                                    f"{path}.{key}" if path else key)
    elif old != new:
        yield path, old, new


class Objective:
    """Optuna's objective: sample a configuration, train it once per seed, aggregate.

    A resumed trial reuses the runs it finished (COMPLETE or FAIL) and trains only the others.
    """

    def __init__(self, sweep: Sweep, data: DataSource, recorder: Recorder,
                 progress: Progress) -> None:
        self.sweep, self.data, self.recorder, self.progress = sweep, data, recorder, progress
        from hpo.models import builders

        self.build = builders.resolve(sweep.model.builder)

    def __call__(self, trial: optuna.Trial, claim: Claim) -> float:
        sweep = self.sweep
        params = sweep.search.space.suggest(trial)
        model_params, train_spec = sweep.split_params(params)
        seeds = sweep.protocol.seeds
        trial.set_user_attr("seeds", list(seeds))
        self.progress.trial_started(trial.number, params)
        reused = self.recorder.finished_runs(trial._trial_id)
        if reused:
            self.progress.note(f"  reusing the finished runs of seeds {sorted(reused)}")
        objective, direction = sweep.study.objective, sweep.study.direction
        sink = _TrialSink(trial, claim, self.recorder, self.progress, train_spec.epochs,
                          objective if sweep.search.pruner != "none" else None)
        sink.errors.update({s: r.error or "failed" for s, r in reused.items() if r.state == "FAIL"})
        histories = {s: r.history for s, r in reused.items() if r.state == "COMPLETE"}
        todo = [s for s in seeds if s not in reused]
        if todo:
            job = TrainingJob(self.build, model_params, train_spec, self.data)
            histories.update(train(job, todo, sink, sweep.protocol.pack))
        if sink.pruned_at is not None:
            trial.set_user_attr("pruned_at_epoch", sink.pruned_at)
            raise optuna.TrialPruned(f"mean {objective} at epoch {sink.pruned_at}")
        if sink.errors:
            trial.set_user_attr("failed_seeds", sorted(sink.errors))
        completed = [s for s in seeds if s in histories]
        if len(completed) < sweep.protocol.min_repeats:
            first = sink.errors[min(sink.errors)]
            trial.set_user_attr("error", first)
            raise RunError(
                f"trial {trial.number}: {len(completed)} of {len(seeds)} runs completed, "
                f"fewer than protocol.min_repeats = {sweep.protocol.min_repeats}; "
                f"first failure: {first}"
            )
        curves = [histories[s][objective] for s in completed]
        summary = summarize([reduce_history(c, sweep.study.reduce, direction) for c in curves])
        for key, value in summary.as_dict().items():
            trial.set_user_attr(key, value)
        if not objective.startswith("test_"):  # test_* is measured once, after training
            # The mean over *all* completed seeds, replacing what the pruner was shown while
            # they trained (the first chunk's seeds when seeds train in several chunks).
            storage = trial.study._storage
            for epoch, value in enumerate(mean_curve(curves), start=1):
                if math.isfinite(value):
                    storage.set_trial_intermediate_value(trial._trial_id, epoch, value)
        self.progress.trial_finished(trial.number, summary)
        return summary.mean


class _TrialSink:
    """Forwards a trainer's reports to the recorder (committed per epoch, fenced by the
    trial's claim) and the display.

    What the pruner judges: when the trainer ends an epoch, the mean objective over the seeds it
    is training then is reported for that epoch, once. Packed with ``pack >= repeats`` (the
    default where they fit) that is every seed; with smaller packs it is the first chunk's seeds
    and with ``pack = false`` the first seed alone (later chunks find their epochs reported and
    are not judged). A pruned trial asks the trainer to stop every seed. A COMPLETE trial's
    intermediate values are then replaced by the mean over all its completed seeds (see
    :class:`Objective`), so later trials are judged against full means.
    """

    def __init__(self, trial: optuna.Trial, claim: Claim, recorder: Recorder,
                 progress: Progress, epochs: int, prune_on: str | None) -> None:
        self.trial, self.claim, self.recorder = trial, claim, recorder
        self.progress, self.epochs = progress, epochs
        self.prune_on = prune_on
        self.run_ids: dict[int, int] = {}
        self.errors: dict[int, str] = {}
        self.values: dict[int, dict[int, float]] = {}  # epoch -> seed -> objective value
        self.pruned_at: int | None = None
        # Epochs already reported to Optuna (a resumed trial's before its kill): read once here,
        # kept up to date below, so no epoch pays a database read.
        self.reported = set(trial.study._storage.get_trial(trial._trial_id).intermediate_values)

    @property
    def stopping(self) -> bool:
        return self.pruned_at is not None

    def run_started(self, seed: int) -> None:
        self.run_ids[seed] = self.recorder.start_run(self.claim, seed)
        self.progress.run_started(seed, self.epochs)

    def epoch_finished(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        self.recorder.record_epoch(self.claim, self.run_ids[seed], epoch, logs)
        if self.prune_on is not None and self.prune_on in logs:
            self.values.setdefault(epoch, {})[seed] = logs[self.prune_on]
        self.progress.epoch_finished(seed, epoch, logs)

    def epoch_ended(self, epoch: int) -> None:
        """The trainer finished ``epoch`` for every seed it trains now: report, maybe prune."""
        values = [v for v in self.values.get(epoch, {}).values() if math.isfinite(v)]
        if not values or epoch in self.reported:
            return
        self.recorder.hold(self.claim)  # Optuna's write is not in hpo's transactions: check first
        try:
            self.trial.report(sum(values) / len(values), epoch)
            pruned = self.trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError as exc:
            # Another worker took the trial over and finished it: not this run's failure.
            raise LeaseLost(self.claim.trial_id, None) from exc
        self.reported.add(epoch)
        if pruned:
            self.pruned_at = epoch

    def run_finished(self, seed: int, error: str | None) -> None:
        state = "FAIL" if error else "PRUNED" if self.stopping else "COMPLETE"
        self.recorder.finish_run(self.claim, self.run_ids[seed], state, error)
        if error:
            self.errors[seed] = error
        self.progress.run_finished(seed, error)
