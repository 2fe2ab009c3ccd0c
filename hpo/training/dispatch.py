"""Choosing the trainer for trials' seeds: packed (the default) or solo, one trial or several.

Example:
    >>> from hpo.training.dispatch import train_runs, train_trials
    >>> # train_runs(job, seeds, sink, pack) -> {seed: history}
    >>> # train_trials([(job, seeds, sink), ...], pack) -> [{seed: history}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence

from hpo.training.job import RunSink, SeedRun, TrainingJob
from hpo.training.packed import (
    BYTES_PER_PARAMETER,
    PACK_MEMORY_BYTES,
    pack_size,
    train_packed,
    train_together,
)
from hpo.training.packs import fast_path_applies
from hpo.training.solo import train_solo


def train_runs(job: TrainingJob, seeds: Sequence[int], sink: RunSink,
               pack: bool | int = True, fast: bool = True) -> dict[int, dict]:
    """Train ``job`` once per seed; return the histories of the runs that completed.

    ``pack``: True packs as many seeds per model as fit in memory, an int packs that many,
    False trains one seed at a time (the solo trainer). Seeds that do not fit in one pack
    are trained in several, one after another; a pruned trial (``sink.stopping``) starts no
    more. ``fast`` False keeps to Keras ``fit`` (solo) and the functional pack.
    """
    seeds = list(seeds)
    if pack is False or len(seeds) == 1:
        return train_solo(job, seeds, sink, fast)
    size = pack_size(pack, len(seeds), count_params(job) if pack is True else 0)
    histories: dict[int, dict] = {}
    for start in range(0, len(seeds), size):
        if sink.stopping:  # a pruned trial starts no more seeds
            break
        chunk = seeds[start : start + size]
        if len(chunk) > 1:
            histories.update(train_packed(job, chunk, sink, fast))
        else:
            histories.update(train_solo(job, chunk, sink, fast))
    return histories


def train_trials(trials: Sequence[tuple[TrainingJob, Sequence[int], RunSink]],
                 pack: bool | int = True, fast: bool = True) -> list[dict[int, dict]]:
    """Train several trials' seeds, packing trials together where they can share a pack.

    Trials whose jobs share training settings and data, and whose seeds each fit in one pack,
    are packed together, consecutive ones as long as the pack's replicas fit the memory budget
    (``pack`` True) or number at most ``pack`` (an int); every other trial trains alone, as
    :func:`train_runs` trains it. Each trial's runs report to its own sink. Returns each
    trial's histories of completed runs, in the order of ``trials``.
    """
    histories: list[dict[int, dict]] = [{} for _ in trials]
    if pack is False or len(trials) < 2:
        for i, (job, seeds, sink) in enumerate(trials):
            histories[i] = train_runs(job, seeds, sink, pack, fast)
        return histories
    for members in _packs(trials, pack):
        if len(members) == 1:
            [i] = members
            histories[i] = train_runs(*trials[i], pack=pack, fast=fast)
            continue
        owners = [i for i in members for _ in trials[i][1]]
        runs = [SeedRun(trials[i][0], seed, trials[i][2]) for i in members for seed in trials[i][1]]
        for owner, run, history in zip(owners, runs, train_together(runs, fast), strict=True):
            if history is not None:
                histories[owner][run.seed] = history
    return histories


def _packs(trials: Sequence[tuple[TrainingJob, Sequence[int], RunSink]],
           pack: bool | int) -> list[list[int]]:
    """Indices of ``trials`` trained together, pack by pack, in order.

    A trial joins the pack before it when their training settings and data agree, the fast
    path takes both or neither (so that each replica runs where its solo run does: on
    TensorFlow a dropout model on the fast path draws other masks than on the functional
    pack), its builder works, and the pack stays within the budget.
    """
    packs: list[list[int]] = []
    budget = PACK_MEMORY_BYTES if pack is True else int(pack)
    used, last = 0, None
    for i, (job, seeds, _) in enumerate(trials):
        probe = _probe(job)
        if probe is None:  # the builder fails: alone, so that only its own runs fail
            packs.append([i])
            last = None
            continue
        params, fast = probe
        # Memory (pack True) or replicas (pack an int) this trial's seeds take in a pack.
        size = len(seeds) * (params * BYTES_PER_PARAMETER if pack is True else 1)
        key = (job.spec, id(job.data), fast)
        if last == key and used + size <= budget:
            packs[-1].append(i)
            used += size
        else:
            packs.append([i])
            used, last = size, key if size <= budget else None
    return packs


def _probe(job: TrainingJob) -> tuple[int, bool] | None:
    """One model of ``job``: its parameters and whether the fast path takes it; None when the
    builder fails (its runs will say why)."""
    try:
        model = job.build(job.data.input_shape, job.data.n_classes, **job.model_params)
        return int(model.count_params()), fast_path_applies([model])
    except Exception:  # the runs themselves will report what is wrong with the builder
        return None


def count_params(job: TrainingJob) -> int:
    """The parameters of one model of ``job`` (0 when its builder fails: its runs will say)."""
    probe = _probe(job)
    return 0 if probe is None else probe[0]
