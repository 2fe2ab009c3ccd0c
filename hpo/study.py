"""The sweep's Optuna study: opening it, its sampler and pruner, and its identity.

A study belongs to one experiment. :func:`open_study` creates it with the sweep's identity
(:meth:`~hpo.config.Sweep.identity`) stored under :data:`SWEEP_ATTR`, or loads it after checking
that identity, so that a re-run continues the same experiment and a changed setting is refused
with the first key that differs rather than mixed into the old trials. The sampler and pruner
come from one table each, keyed by the names a sweep file may use (:data:`hpo.config.SAMPLERS`,
:data:`hpo.config.PRUNERS`).

The user-attribute keys hpo writes on studies and trials are defined here once, for the modules
that write them and those that read them back.

Example:
    >>> import os, tempfile
    >>> from hpo.store import Store
    >>> from hpo.sweep import parse_sweep
    >>> text = '''
    ... [study]
    ... name = "doc"
    ... direction = "maximize"
    ... [data]
    ... dataset = "mnist"
    ... [model]
    ... builder = "mlp"
    ... [train]
    ... epochs = 2
    ... [search.space]
    ... width = [4, 16]
    ... '''
    >>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "s.db"), create=True)
    >>> study = open_study(parse_sweep(text), store)
    >>> type(study.sampler).__name__, study.user_attrs[SWEEP_ATTR]["search"]["sampler"]
    ('_GridSampler', 'grid')
    >>> open_study(parse_sweep(text, ["train.epochs=3"]), store)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hpo.errors.SweepError: train.epochs = 3: study 'doc' in sqlite:///... was run with 2; ...
    >>> store.dispose()
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import optuna

from hpo.config import Sweep
from hpo.errors import SweepError
from hpo.store import Store

# The states of a trial that counts towards the target and will not run again.
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)
# Study user attribute: the sweep's identity (a JSON object), checked when the study is reopened.
SWEEP_ATTR = "hpo.sweep"
# Trial user attributes.
SKIPPED_ATTR = "hpo.skipped"  # a grid point another trial already holds: not trained, not counted
SEEDS_ATTR = "seeds"  # the protocol's seeds, in order
PRUNED_AT_ATTR = "pruned_at_epoch"  # the epoch at which the pruner stopped the trial
FAILED_SEEDS_ATTR = "failed_seeds"  # the seeds whose run failed, sorted
ERROR_ATTR = "error"  # the first failed seed's error, when too few seeds completed
# With several objectives: each one's metric, direction and statistics (n, mean, std, ...), in
# order; the first one's are also the trial's plain n, mean, std, ... attributes.
OBJECTIVES_ATTR = "objectives"


def open_study(sweep: Sweep, store: Store) -> optuna.Study:
    """Create the sweep's study, or load it after checking it is the same experiment.

    Workers starting together may race to create it: the losers load the winner's study.

    Raises:
        SweepError: the stored study has another direction, was not made by hpo, or was run
            with other settings (the message names the first that differs).
    """
    name, sampler, pruner = sweep.study.name, make_sampler(sweep), make_pruner(sweep)
    identity = json.loads(json.dumps(sweep.identity()))  # as stored: tuples become lists
    try:
        store.optuna.get_study_id_from_name(name)
    except KeyError:
        try:
            study = optuna.create_study(
                study_name=name, storage=store.optuna, sampler=sampler, pruner=pruner,
                directions=sweep.study.directions,
            )
        except optuna.exceptions.DuplicatedStudyError:
            pass  # another worker created it a moment ago
        else:
            study.set_user_attr(SWEEP_ATTR, identity)
            enqueue(study, store, sweep.search.enqueue)
            return study
    study = optuna.load_study(study_name=name, storage=store.optuna, sampler=sampler,
                              pruner=pruner)
    stored_directions = [d.name.lower() for d in study.directions]
    if stored_directions != sweep.study.directions:
        several = len(stored_directions) > 1 or len(sweep.study.directions) > 1
        key, given, stored = (("study.objectives directions", sweep.study.directions,
                               stored_directions) if several else
                              ("study.direction", sweep.study.direction, stored_directions[0]))
        raise SweepError(
            f"{key} = {given!r}: study {name!r} in {store.url} "
            f"was created with {stored!r}; use another study name or storage"
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
    enqueue(study, store, sweep.search.enqueue)  # entries added to the file since
    return study


def make_sampler(sweep: Sweep) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``[search] sampler``, seeded by ``search.seed`` (default:
    ``protocol.seed``)."""
    seed = sweep.search.seed if sweep.search.seed is not None else sweep.protocol.seed
    return _SAMPLERS[sweep.search.sampler](sweep, seed)


def enqueue(study: optuna.Study, store: Store, configurations) -> list[dict]:
    """Enqueue each configuration (param → value) unless an equal one is already a trial of
    the study, in any state (Optuna's ``enqueue_trial(skip_if_exists=True)``); the check and
    the write hold :meth:`Store.exclusive`, so workers starting together enqueue it once.
    Return the configurations enqueued. The next trials asked take them first, in order."""
    added: list[dict] = []
    if not configurations:
        return added  # no lock taken, no trial read
    with store.exclusive():
        for params in configurations:
            before = _holding(study, params)
            study.enqueue_trial(dict(params), skip_if_exists=True)
            if _holding(study, params) > before:
                added.append(dict(params))
    return added


def _holding(study: optuna.Study, params: dict) -> int:
    """How many trials hold exactly ``params``: asked (their params) or waiting (the fixed
    params Optuna keeps until they are asked). Other workers' asks do not change it."""
    return sum((t.params or t.system_attrs.get("fixed_params")) == dict(params)
               for t in study.get_trials(deepcopy=False))


def enqueue_trial(storage: str, study: str, params: dict) -> bool:
    """Add ``params`` (param → value, checked against the study's stored search space) as the
    next trial of the hpo ``study`` in the database ``storage``, unless a trial already has
    exactly these params; return whether it was added. What ``hpo enqueue`` does.

    Example:
        >>> hpo.enqueue_trial("sqlite:///studies/x.db", "x", {"width": 64})  # doctest: +SKIP
        True
    """
    store = Store.open(storage)
    try:
        return enqueue_into(store, study, params)[1]
    finally:
        store.dispose()


def enqueue_into(store: Store, name: str, values: dict) -> tuple[dict, bool]:
    """Enqueue ``values`` (param → value) into the hpo study ``name``, checked against the
    search space stored with it: (the configuration, whether it was added; False when an equal
    one is already a trial).

    Raises:
        SweepError: not an hpo study, a grid study, or a value the space does not hold.
    """
    from hpo.space import FunctionSpace, SearchSpace

    try:
        study = optuna.load_study(study_name=name, storage=store.optuna)
    except KeyError:
        raise SweepError(f"study {name!r}: not in {store.url}") from None
    stored = study.user_attrs.get(SWEEP_ATTR)
    if stored is None:
        raise SweepError(f"study {name!r}: not made by hpo (no search space stored)")
    if stored.get("search", {}).get("sampler") == "grid":
        raise SweepError(f"study {name!r}: its grid sampler visits every configuration in its "
                         "own order; enqueue needs another sampler")
    stored_space = stored.get("search.space") or {}
    space = (FunctionSpace(stored_space, None) if isinstance(stored_space, str)
             else SearchSpace.parse(stored_space))
    point = space.point(values, "--set")
    return point, bool(enqueue(study, store, [point]))


def make_pruner(sweep: Sweep) -> optuna.pruners.BasePruner:
    """The Optuna pruner named by ``[search] pruner``; it judges the mean curve over seeds.

    Median: a trial stops when its mean is worse than the median of earlier trials at the same
    epoch, after 3 finished trials and from epoch 3 on (the first epochs are too noisy to judge;
    :func:`pruner_warning` says when that leaves nothing to prune).
    Hyperband and successive halving count epochs as their resource.
    """
    return _PRUNERS[sweep.search.pruner](sweep)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` after the last point: that works only
    inside ``study.optimize``, and hpo's own loop (ask and tell) checks ``is_exhausted`` itself."""

    def after_trial(self, study, trial, state, values) -> None:
        pass


# One entry per name of hpo.config.SAMPLERS: (sweep, seed) -> sampler.
_SAMPLERS: dict[str, Callable[[Sweep, int], optuna.samplers.BaseSampler]] = {
    "grid": lambda sweep, seed: _GridSampler(sweep.search.space.grid(), seed=seed),
    "random": lambda sweep, seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda sweep, seed: optuna.samplers.TPESampler(seed=seed),
    "nsgaii": lambda sweep, seed: optuna.samplers.NSGAIISampler(seed=seed),
    "cmaes": lambda sweep, seed: optuna.samplers.CmaEsSampler(seed=seed),
    "gp": lambda sweep, seed: optuna.samplers.GPSampler(seed=seed),
    "qmc": lambda sweep, seed: optuna.samplers.QMCSampler(seed=seed),
}

# The first epoch at which each pruner can stop a trial (epochs are Optuna's steps, from 1), and
# the finished trials the median pruner waits for before it judges any.
PRUNE_FROM_EPOCH = {"median": 3, "hyperband": 1, "successive_halving": 1}
MEDIAN_STARTUP_TRIALS = 3


def pruner_warning(sweep: Sweep) -> str | None:
    """Why the sweep's pruner cannot stop a trial before its last epoch, or None.

    A trial pruned at its last epoch has trained everything and is left out of the results.

    Example:
        >>> from hpo.shipped import locate
        >>> from hpo.sweep import load_sweep
        >>> sweep = load_sweep(locate("mnist-q6-width"), ["train.epochs=3", "search.pruner=median"])
        >>> print(pruner_warning(sweep))  # doctest: +ELLIPSIS
        search.pruner = 'median' judges a trial from epoch 3 on and train.epochs = 3: ...
    """
    pruner, epochs = sweep.search.pruner, sweep.train.epochs
    if pruner == "none":
        return None
    first = PRUNE_FROM_EPOCH[pruner]
    if epochs <= first:
        return (f"search.pruner = {pruner!r} judges a trial from epoch {first} on and "
                f"train.epochs = {epochs}: it can stop a trial only after its last epoch, "
                "saving nothing, and a trial it prunes is left out of the results; use "
                f"train.epochs > {first}, or pruner = \"none\"")
    if pruner == "median" and sweep.n_trials <= MEDIAN_STARTUP_TRIALS:
        return (f"search.pruner = 'median' judges a trial once {MEDIAN_STARTUP_TRIALS} trials "
                f"have finished, and the sweep has {sweep.n_trials}: it can prune nothing")
    return None


# One entry per name of hpo.config.PRUNERS: sweep -> pruner.
_PRUNERS: dict[str, Callable[[Sweep], optuna.pruners.BasePruner]] = {
    "none": lambda sweep: optuna.pruners.NopPruner(),
    "median": lambda sweep: optuna.pruners.MedianPruner(
        n_startup_trials=MEDIAN_STARTUP_TRIALS, n_warmup_steps=PRUNE_FROM_EPOCH["median"]),
    "hyperband": lambda sweep: optuna.pruners.HyperbandPruner(
        min_resource=1, max_resource=sweep.train.epochs),
    "successive_halving": lambda sweep: optuna.pruners.SuccessiveHalvingPruner(min_resource=1),
}


_UNRECORDED = object()  # a setting missing from a stored identity


def _first_difference(old: object, new: object) -> tuple | None:
    """The first setting whose stored value differs, as (key, stored, new), preferring one the
    study recorded over one it did not (a pruner changed names ``search.pruner``, not the
    ``protocol.pack`` that comes into the identity with it)."""
    found = list(_differences(old, new))
    recorded = [d for d in found if d[1] is not _UNRECORDED]
    return (recorded or found or [None])[0]


def _differences(old: object, new: object, path: str = "") -> Iterator[tuple]:
    """Every (dotted key, stored, new) where the two identities differ, keys in sorted order."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key, _UNRECORDED), new.get(key),
                                    f"{path}.{key}" if path else key)
    elif old != new:
        yield path, old, new
