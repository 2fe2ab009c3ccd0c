"""The packed trainer: a trial's seeded runs trained together, as replicas of the user's model.

Replica i is the user's model built under ``set_random_seed(seeds[i])`` (so its initial weights
and its dropout seed are the solo run's), fed from one table of examples with its own per-epoch
order (the solo run's order, :func:`hpo.stats.epoch_order`). Each replica's gradient is exactly
its own and optimizers update element-wise, so each replica also keeps its own optimizer state;
each replica's metrics become its run's history.

How the replicas run together is a :class:`~hpo.training.packs.base.Pack`, chosen by
:func:`~hpo.training.packs.make_pack` (a backend's XLA fast path where it applies, else one
functional Keras model). This module is the epoch loop around it: each epoch the pack trains every
replica, then each replica goes through :mod:`hpo.training.epochs`' rules as a solo run does. A
replica that early stopping stops ends its history there (the pack trains on while one replica
does); a replica whose loss becomes NaN fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpo.datasets.prepare import Split
from hpo.errors import LeaseLost
from hpo.stats import epoch_order
from hpo.training.epochs import RunEpochs, end_epoch
from hpo.training.job import RunSink, TrainingJob, describe
from hpo.training.packs import FastPathUnavailable, Pack, make_pack

# A packed model keeps this much memory for weights, gradients and optimizer slots at most;
# more seeds than fit are trained in several packs.
PACK_MEMORY_BYTES = 2 * 1024**3
_BYTES_PER_PARAMETER = 4 * 4  # float32 weight, gradient, two optimizer slots (Adam)


def pack_size(pack: bool | int, repeats: int, n_params: int) -> int:
    """How many seeds to train in one packed model.

    Example:
        >>> pack_size(True, 10, 25_450), pack_size(4, 10, 25_450), pack_size(False, 10, 25_450)
        (10, 4, 1)
    """
    if pack is False:
        return 1
    if pack is True:
        fits = max(1, PACK_MEMORY_BYTES // max(1, n_params * _BYTES_PER_PARAMETER))
        return int(min(repeats, fits))
    return int(min(pack, repeats))


def train_packed(job: TrainingJob, seeds: Sequence[int], sink: RunSink,
                 fast: bool = True) -> dict[int, dict]:
    """Train one replica per seed in one model; report as solo runs report.

    Returns the histories of the replicas that completed; a failed replica is reported finished
    with its error. An error that breaks the packed model fails every replica in it. ``fast``
    False keeps to the functional pack (the fast paths are otherwise used where they apply).
    """
    for seed in seeds:
        sink.run_started(seed)
    try:
        runs = _train(job, list(seeds), sink, fast)
    except LeaseLost:  # the sink's, not the runs': this worker no longer holds the trial
        raise
    except Exception as exc:  # the whole pack failed: each of its runs records why
        for seed in seeds:
            sink.run_finished(seed, describe(exc))
        return {}
    for run in runs:
        sink.run_finished(run.seed, None if run.failure is None else describe(run.failure))
    return {run.seed: run.history for run in runs if run.failure is None}


def epoch_rows(seeds: Sequence[int], splits: Sequence[Split], epoch: int) -> np.ndarray:
    """(n_train, R) example rows: column i is seed i's training order in ``epoch`` (from 0)."""
    columns = [split.train[epoch_order(seed, epoch, len(split.train))]
               for seed, split in zip(seeds, splits, strict=True)]
    return np.stack(columns, axis=1).astype("int32")


def _train(job: TrainingJob, seeds: list[int], sink: RunSink, fast: bool) -> list[RunEpochs]:
    splits = [job.data.split(seed) for seed in seeds]
    pack = make_pack(job, seeds, splits, fast)
    try:
        return _train_pack(pack, job, seeds, splits, sink)
    except FastPathUnavailable:  # nothing trained or reported yet: start again without XLA
        pack.close()
        pack = make_pack(job, seeds, splits, fast=False)
        return _train_pack(pack, job, seeds, splits, sink)
    finally:
        pack.close()


def _train_pack(pack: Pack, job: TrainingJob, seeds: list[int], splits: list[Split],
                sink: RunSink) -> list[RunEpochs]:
    """The epoch loop: ``pack`` trains every replica, then each goes through the epoch rules."""
    spec = job.spec
    runs = [RunEpochs(seed, model, spec, sink)
            for seed, model in zip(seeds, pack.models, strict=True)]
    test_rows = np.stack([s.test for s in splits], axis=1).astype("int32")
    for epoch in range(1, spec.epochs + 1):
        logs = pack.fit_epoch(epoch_rows(seeds, splits, epoch - 1))
        end_epoch(runs, epoch, logs, lambda: pack.evaluate(test_rows))
        sink.epoch_ended(epoch)
        if all(run.done for run in runs) or sink.stopping:
            break
    return runs
