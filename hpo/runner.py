"""The study runner: run a sweep's trials, alone or as one of several workers sharing its study.

One Optuna trial per configuration; inside it, one seeded run per ``protocol`` seed
(:mod:`hpo.objective`), recorded epoch by epoch. The study is created or reopened, after checking
it is the same experiment, by :mod:`hpo.study`.

Every ``hpo run`` or ``hpo worker`` process runs the same loop: first complete any stale trial
(its holder was killed: see :mod:`hpo.store.lease`), reusing the seeds it finished; else ask
Optuna for a new trial while the study holds fewer than its target. Several processes, on one
machine or many, can therefore share one study. The data and the model builder are checked
before anything is written to the database.

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
import functools

import optuna

from hpo import interrupts
from hpo._imports import LazyImport
from hpo.config import Sweep
from hpo.datasets import loaders
from hpo.datasets.prepare import DataSource
from hpo.errors import LeaseLost, RunError, SweepError
from hpo.kept_models import ModelKeeper
from hpo.models import builders
from hpo.objective import Objective
from hpo.progress import NullProgress, Progress
from hpo.store import Store
from hpo.store.lease import Claim, Leases
from hpo.store.recorder import Recorder
from hpo.study import FINISHED, SKIPPED_ATTR, open_study, pruner_warning

keras = LazyImport("keras")

_GRID_ID = "grid_id"  # the system attribute in which Optuna's GridSampler names a trial's point


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
    url = storage or sweep.storage_url
    keeper = ModelKeeper.for_sweep(sweep, url)
    store = Store.open(url, create=True)
    try:
        study = open_study(sweep, store)
        if keeper is not None:
            keeper.attach(study, store.engine, sweep.study.artifacts)
        target = n_trials if n_trials is not None else sweep.n_trials
        if isinstance(study.sampler, optuna.samplers.GridSampler):
            target = min(target, sweep.search.space.grid_size())
        leases = Leases(store.engine)
        objective = Objective(sweep, data, Recorder(store.engine), store.optuna, progress,
                              keeper)
        finished = len(_counted(study, FINISHED))
        progress.sweep_started(sweep, max(0, target - finished), finished)
        warning = pruner_warning(sweep)
        if warning:
            progress.note(f"warning: {warning}")
        batch = trials_at_once(sweep)
        try:
            with interrupts.delivered():
                while trials := _next_trials(study, leases, target, progress, batch):
                    _run_trials(study, trials, objective, leases, progress)
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


# Samplers whose trials do not depend on earlier trials' values: asking several before telling
# any gives the same configurations as asking them one by one.
INDEPENDENT_SAMPLERS = ("grid", "random", "qmc")
# Trials asked and trained together at most when ``protocol.pack_trials`` is true.
PACK_TRIALS = 16


def trials_at_once(sweep: Sweep) -> int:
    """How many trials one worker asks and trains together (packed across trials).

    More than one only where packing is on (and a trial's seeds fit one pack) and the sampler
    is independent of earlier trials' values (:data:`INDEPENDENT_SAMPLERS`):
    ``protocol.pack_trials`` true means at most :data:`PACK_TRIALS`, an int at most that many;
    the memory budget then decides which of them share a pack
    (:func:`~hpo.training.dispatch.train_trials`). With a pruner, true means one:
    Optuna's pruners judge a trial against COMPLETE trials only, so trials trained together
    cannot prune each other and the first batch could not be pruned at all; an int still
    packs that many (fewer trials pruned, sooner results). An ``epoch_seconds`` objective
    means one: a trial's time must be its own.

    Example:
        >>> from pathlib import Path
        >>> from hpo.sweep import load_sweep
        >>> q6 = Path(__file__).parents[1] / "sweeps" / "mnist-q6-width.toml"  # an 8-point grid
        >>> trials_at_once(load_sweep(q6)), trials_at_once(load_sweep(q6, ["protocol.pack=false"]))
        (16, 1)
        >>> trials_at_once(load_sweep(q6, ["protocol.pack=4"]))  # 10 seeds: 3 packs per trial
        1
        >>> trials_at_once(load_sweep(q6, ["search.pruner='median'"]))
        1
    """
    protocol = sweep.protocol
    if protocol.pack is False or protocol.pack_trials is False:
        return 1
    if any(o.metric == "epoch_seconds" for o in sweep.study.objectives):
        return 1  # a trial's time is its own only when no other trial shares its pack
    if protocol.pack is not True and protocol.pack < protocol.repeats:
        return 1  # each trial's seeds need several packs: no trials would share one
    if sweep.search.sampler not in INDEPENDENT_SAMPLERS:
        return 1
    if protocol.pack_trials is True:
        return PACK_TRIALS if sweep.search.pruner == "none" else 1
    return int(protocol.pack_trials)


def _next_trials(study: optuna.Study, leases: Leases, target: int, progress: Progress,
                 batch: int) -> list[tuple[optuna.Trial, Claim]]:
    """Up to ``batch`` trials to run now: stale ones first, then new ones (see
    :func:`_next_trial`); empty when there is nothing left to run."""
    trials: list[tuple[optuna.Trial, Claim]] = []
    while len(trials) < batch and (found := _next_trial(study, leases, target, progress)):
        trials.append(found)
    return trials


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


def _run_trials(study: optuna.Study, trials: list[tuple[optuna.Trial, Claim]],
                objective: Objective, leases: Leases, progress: Progress) -> None:
    """Run trials (trained together where they can be) under heartbeats; tell Optuna how each
    ended.

    Ctrl-C (or any error of hpo itself) leaves the unfinished trials RUNNING with their leases
    released and their runs in flight INTERRUPTED: the next ``hpo run`` resumes them. A trial
    taken over (this worker was frozen past the stale limit) gets nothing more written by this
    worker, which says so in one line and goes on with the others.
    """
    to_run = []
    for trial, claim in trials:
        holder = _grid_holder(study, trial)
        if holder is None:
            to_run.append((trial, claim))
            continue
        trial.set_user_attr(SKIPPED_ATTR, f"grid point of trial {holder}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        progress.note(f"trial #{trial.number} skipped: its grid point is trial #{holder}'s")
    unfinished = {claim.trial_id: claim for _, claim in to_run}
    try:
        with contextlib.ExitStack() as heartbeats:
            for _, claim in to_run:
                heartbeats.enter_context(leases.heartbeat(claim))
            prepared = []
            for trial, claim in to_run:
                try:
                    prepared.append((trial, claim, objective.prepare(trial, claim)))
                except (LeaseLost, optuna.exceptions.UpdateFinishedTrialError) as exc:
                    _taken_over(trial, claim, exc, objective, progress)
                    del unfinished[claim.trial_id]
                except RunError as exc:  # told FAIL, as a trial whose seeds all failed
                    _finish_trial(study, trial, claim, functools.partial(_raise, exc),
                                  objective, leases, progress)
                    del unfinished[claim.trial_id]
            objective.train([work for _, _, work in prepared])
            for trial, claim, work in prepared:
                _finish_trial(study, trial, claim, lambda work=work: objective.finish(work),
                              objective, leases, progress)
                del unfinished[claim.trial_id]
    except BaseException:
        for claim in unfinished.values():
            with contextlib.suppress(LeaseLost):  # taken over meanwhile: nothing of ours to mark
                objective.recorder.interrupt_runs(claim)
                leases.release(claim)
        raise


def _finish_trial(study: optuna.Study, trial: optuna.Trial, claim: Claim, value_of,
                  objective: Objective, leases: Leases, progress: Progress) -> None:
    """Tell Optuna how ``trial`` ended: ``value_of()`` gives its value or raises why not."""
    try:
        try:
            value, state = value_of(), optuna.trial.TrialState.COMPLETE
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
        _taken_over(trial, claim, exc, objective, progress)
    if objective.keeper is not None:  # the told trial may have superseded the best's models
        try:
            objective.keeper.prune(study)
        except Exception as exc:  # a store or database hiccup: the next tell prunes again
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            progress.note(f"  superseded models not removed yet ({reason})")


def _raise(exc: Exception) -> None:
    raise exc


def _taken_over(trial: optuna.Trial, claim: Claim, exc: Exception, objective: Objective,
                progress: Progress) -> None:
    """``trial`` is another worker's now: drop it, marking the runs in flight if still ours.

    Lost the lease (nothing of ours to mark: the fence refuses), or still holding it while
    another worker finished the trial (mark what this one had in flight).
    """
    with contextlib.suppress(LeaseLost):
        objective.recorder.interrupt_runs(claim)
    holder = exc.holder if isinstance(exc, LeaseLost) else None
    progress.note(f"trial #{trial.number} was taken over by {holder or 'another worker'}; "
                  "dropping its in-flight runs")


def _grid_holder(study: optuna.Study, trial: optuna.Trial) -> int | None:
    """The number of an earlier trial holding this trial's grid point, if any.

    Optuna's GridSampler gives trial k grid point k; a trial past the grid (several workers
    asking at once near the end) gets a point another trial holds, and is not trained.
    """
    if not isinstance(study.sampler, optuna.samplers.GridSampler):
        return None
    trials = study.get_trials(deepcopy=False)
    grid_id = next(t.system_attrs.get(_GRID_ID) for t in trials if t.number == trial.number)
    holders = [t.number for t in trials if t.number < trial.number
               and t.system_attrs.get(_GRID_ID) == grid_id and SKIPPED_ATTR not in t.user_attrs
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
