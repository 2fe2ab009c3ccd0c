"""The study runner: create or resume the Optuna study, and the objective that runs the protocol.

One Optuna trial per configuration; inside it, one seeded run per ``protocol`` seed, recorded epoch
by epoch. The trial's value is the mean over seeds of the reduced objective, with its spread as
user attributes and the mean learning curve as intermediate values.

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

import json
import math
from collections.abc import Mapping

import optuna

from hpo.datasets import loaders
from hpo.datasets.prepare import DataSource
from hpo.errors import RunError, SweepError
from hpo.progress import NullProgress, Progress
from hpo.protocol import mean_curve, reduce_history, summarize
from hpo.store import Store
from hpo.store.recorder import Recorder
from hpo.sweep import Sweep
from hpo.training.dispatch import train
from hpo.training.solo import TrainingJob

SWEEP_ATTR = "hpo.sweep"  # study user attribute: the sweep's identity, checked on resume
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)


def run_sweep(
    sweep: Sweep,
    *,
    storage: str | None = None,
    n_trials: int | None = None,
    progress: Progress | None = None,
) -> optuna.Study:
    """Run ``sweep`` until its study holds ``n_trials`` finished trials (default: the sweep's).

    Re-running a sweep continues its study; a finished grid runs nothing more. A study of the same
    name whose stored settings differ is refused with :class:`~hpo.errors.SweepError`.
    """
    progress = progress or NullProgress()
    data = load_data(sweep)  # before the database: a missing data file must change nothing
    url = storage or sweep.storage_url
    store = Store.open(url, create=True)
    try:
        study = open_study(sweep, store)
        target = n_trials if n_trials is not None else sweep.n_trials
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        remaining = max(0, target - finished)
        sampler = study.sampler
        if isinstance(sampler, optuna.samplers.GridSampler) and sampler.is_exhausted(study):
            remaining = 0
        progress.sweep_started(sweep, remaining, finished)
        try:
            if remaining:
                objective = Objective(sweep, data, Recorder(store.engine), progress)
                study.optimize(objective, n_trials=remaining, catch=(RunError,))
        finally:
            progress.sweep_finished()
        return study
    finally:
        store.dispose()


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


def make_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``[search] sampler``, seeded."""
    seed = sweep.search.seed if sweep.search.seed is not None else sweep.protocol.seed
    name = sweep.search.sampler
    if name == "grid":
        return optuna.samplers.GridSampler(sweep.search.space.grid(), seed=seed)
    samplers = {
        "random": optuna.samplers.RandomSampler,
        "tpe": optuna.samplers.TPESampler,
        "cmaes": optuna.samplers.CmaEsSampler,
        "gp": optuna.samplers.GPSampler,
        "qmc": optuna.samplers.QMCSampler,
    }
    return samplers[name](seed=seed)


def open_study(sweep: Sweep, store: Store) -> optuna.Study:
    """Create the sweep's study, or load it after checking it is the same experiment."""
    name, sampler = sweep.study.name, make_sampler(sweep)
    identity = json.loads(json.dumps(sweep.identity()))  # as stored: tuples become lists
    try:
        store.optuna.get_study_id_from_name(name)
    except KeyError:
        study = optuna.create_study(
            study_name=name, storage=store.optuna, sampler=sampler,
            direction=sweep.study.direction,
        )
        study.set_user_attr(SWEEP_ATTR, identity)
        return study
    study = optuna.load_study(study_name=name, storage=store.optuna, sampler=sampler)
    stored_direction = study.direction.name.lower()
    if stored_direction != sweep.study.direction:
        raise SweepError(
            f"study.direction = {sweep.study.direction!r}: study {name!r} in {store.url} "
            f"was created with {stored_direction!r}; use another study name or storage"
        )
    stored = study.user_attrs.get(SWEEP_ATTR)
    if stored is None:
        raise SweepError(
            f"study.name = {name!r}: a study of that name in {store.url} was not made by hpo; "
            "use another study name or storage"
        )
    difference = _first_difference(stored, identity)
    if difference:
        key, old, new = difference
        raise SweepError(
            f"{key} = {new!r}: study {name!r} in {store.url} was run with {old!r}; "
            "use another study.name (or storage) rather than mixing two experiments"
        )
    return study


def _first_difference(old: object, new: object, path: str = "") -> tuple | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            found = _first_difference(
                old.get(key), new.get(key), f"{path}.{key}" if path else key
            )
            if found:
                return found
        return None
    return None if old == new else (path, old, new)


class Objective:
    """Optuna's objective: sample a configuration, train it once per seed, aggregate."""

    def __init__(self, sweep: Sweep, data: DataSource, recorder: Recorder,
                 progress: Progress) -> None:
        self.sweep, self.data, self.recorder, self.progress = sweep, data, recorder, progress
        from hpo.models import builders

        self.build = builders.resolve(sweep.model.builder)

    def __call__(self, trial: optuna.Trial) -> float:
        sweep = self.sweep
        params = sweep.search.space.suggest(trial)
        model_params, train_spec = sweep.split_params(params)
        seeds = sweep.protocol.seeds
        trial.set_user_attr("seeds", list(seeds))
        self.progress.trial_started(trial.number, params)
        sink = _TrialSink(trial._trial_id, self.recorder, self.progress, train_spec.epochs)
        job = TrainingJob(self.build, model_params, train_spec, self.data)
        histories = train(job, seeds, sink, sweep.protocol.pack)
        if sink.errors:
            trial.set_user_attr("failed_seeds", sorted(sink.errors))
        if not histories:
            first = next(iter(sink.errors.values()))
            trial.set_user_attr("error", first)
            raise RunError(f"trial {trial.number}: all {len(seeds)} runs failed; first: {first}")
        objective, direction = sweep.study.objective, sweep.study.direction
        curves = [histories[s][objective] for s in seeds if s in histories]
        summary = summarize([reduce_history(c, sweep.study.reduce, direction) for c in curves])
        for key, value in summary.as_dict().items():
            trial.set_user_attr(key, value)
        if not objective.startswith("test_"):  # test_* is measured once, after training
            for epoch, value in enumerate(mean_curve(curves), start=1):
                if math.isfinite(value):
                    trial.report(value, epoch)
        self.progress.trial_finished(trial.number, summary)
        return summary.mean


class _TrialSink:
    """Forwards a trainer's reports to the recorder (committed per epoch) and the display."""

    def __init__(self, trial_id: int, recorder: Recorder, progress: Progress, epochs: int) -> None:
        self.trial_id, self.recorder, self.progress, self.epochs = (
            trial_id, recorder, progress, epochs,
        )
        self.run_ids: dict[int, int] = {}
        self.errors: dict[int, str] = {}

    def run_started(self, seed: int) -> None:
        self.run_ids[seed] = self.recorder.start_run(self.trial_id, seed)
        self.progress.run_started(seed, self.epochs)

    def epoch_finished(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        self.recorder.record_epoch(self.run_ids[seed], epoch, logs)
        self.progress.epoch_finished(seed, epoch, logs)

    def run_finished(self, seed: int, error: str | None) -> None:
        self.recorder.finish_run(self.run_ids[seed], "FAIL" if error else "COMPLETE", error)
        if error:
            self.errors[seed] = error
        self.progress.run_finished(seed, error)
