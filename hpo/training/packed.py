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

The replicas of one pack may belong to several trials (:func:`train_together`): each trial's runs
report to its own sink, which judges its own epochs; a pruned trial's runs end there while the
others train on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpo.datasets.prepare import Split
from hpo.errors import LeaseLost
from hpo.stats import epoch_order
from hpo.training.epochs import RunEpochs, end_epoch
from hpo.training.job import RunSink, SeedRun, TrainingJob, describe
from hpo.training.packs import FastPathUnavailable, Pack, make_fast_pack, make_pack

# A packed model keeps this much memory for weights, gradients and optimizer slots at most;
# more seeds than fit are trained in several packs.
PACK_MEMORY_BYTES = 2 * 1024**3
BYTES_PER_PARAMETER = 4 * 4  # float32 weight, gradient, two optimizer slots (Adam)


def pack_size(pack: bool | int, repeats: int, n_params: int) -> int:
    """How many seeds to train in one packed model.

    Example:
        >>> pack_size(True, 10, 25_450), pack_size(4, 10, 25_450), pack_size(False, 10, 25_450)
        (10, 4, 1)
    """
    if pack is False:
        return 1
    if pack is True:
        fits = max(1, PACK_MEMORY_BYTES // max(1, n_params * BYTES_PER_PARAMETER))
        return int(min(repeats, fits))
    return int(min(pack, repeats))


def train_packed(job: TrainingJob, seeds: Sequence[int], sink: RunSink,
                 fast: bool = True) -> dict[int, dict]:
    """Train one replica per seed in one pack; report as solo runs report.

    Returns the histories of the replicas that completed; a failed replica is reported finished
    with its error. An error that breaks the pack fails every replica in it. ``fast`` False
    keeps to the functional pack (the fast paths are otherwise used where they apply).
    """
    histories = train_together([SeedRun(job, seed, sink) for seed in seeds], fast)
    return {seed: h for seed, h in zip(seeds, histories, strict=True) if h is not None}


def train_together(runs: Sequence[SeedRun], fast: bool = True) -> list[dict | None]:
    """Train ``runs`` (of one trial or several, sharing training settings and data) in one pack.

    Each run is reported to its own sink as :func:`train_packed` reports: every run is started
    first; each epoch every run still training reports it, then each sink whose runs trained
    that epoch gets one ``epoch_ended`` and is asked whether it is ``stopping`` (its runs then
    end, the others go on); every run is finished last. Returns each run's history, None for a
    failed run.
    """
    for run in runs:
        run.sink.run_started(run.seed)
    try:
        epochs = _train(list(runs), fast)
    except LeaseLost:  # a sink's, not the runs': this worker no longer holds a trial
        raise
    except Exception as exc:  # the whole pack failed: each of its runs records why
        for run in runs:
            run.sink.run_finished(run.seed, describe(exc))
        return [None] * len(runs)
    for run in epochs:
        run.sink.run_finished(run.seed, None if run.failure is None else describe(run.failure))
    return [run.history if run.failure is None else None for run in epochs]


def train_alone(job: TrainingJob, seed: int, sink: RunSink) -> dict[str, list[float]] | None:
    """One seed's run on the backend's fast path (a pack of one), or None where none applies.

    This is how a solo run trains when a fast path takes its model: packed and solo runs then
    run the same compiled step and draw the same dropout masks by construction. Reports as
    :func:`hpo.training.solo.train_run` does (``run_started`` and ``run_finished`` are the
    caller's), and raises what failed the run. None also when XLA cannot compile the model
    (nothing is reported then).
    """
    run = SeedRun(job, seed, sink)
    splits = [job.data.split(seed)]
    pack = make_fast_pack([job], [seed], splits)
    if pack is None:
        return None
    try:
        [trained] = _train_pack(pack, [run], splits)
    except FastPathUnavailable:
        return None
    finally:
        pack.close()
    if trained.failure is not None:
        raise trained.failure
    return trained.history


def epoch_rows(seeds: Sequence[int], splits: Sequence[Split], epoch: int) -> np.ndarray:
    """(n_train, R) example rows: column i is seed i's training order in ``epoch`` (from 0)."""
    columns = [split.train[epoch_order(seed, epoch, len(split.train))]
               for seed, split in zip(seeds, splits, strict=True)]
    return np.stack(columns, axis=1).astype("int32")


def _train(runs: list[SeedRun], fast: bool) -> list[RunEpochs]:
    jobs, seeds = [run.job for run in runs], [run.seed for run in runs]
    splits = [run.job.data.split(run.seed) for run in runs]
    pack = make_pack(jobs, seeds, splits, fast)
    try:
        return _train_pack(pack, runs, splits)
    except FastPathUnavailable:  # nothing trained or reported yet: start again without XLA
        pack.close()
        pack = make_pack(jobs, seeds, splits, fast=False)
        return _train_pack(pack, runs, splits)
    finally:
        pack.close()


def _train_pack(pack: Pack, runs: list[SeedRun], splits: list[Split]) -> list[RunEpochs]:
    """The epoch loop: ``pack`` trains every replica, then each goes through the epoch rules,
    then each sink whose runs trained the epoch ends it."""
    spec = runs[0].job.spec
    seeds = [run.seed for run in runs]
    epochs = [RunEpochs(run.seed, model, spec, run.sink)
              for run, model in zip(runs, pack.models, strict=True)]
    sinks = list({id(run.sink): run.sink for run in runs}.values())  # each once, in order
    test_rows = np.stack([s.test for s in splits], axis=1).astype("int32")
    for epoch in range(1, spec.epochs + 1):
        logs = pack.fit_epoch(epoch_rows(seeds, splits, epoch - 1))
        training = [sink for sink in sinks
                    if any(not run.done for run in epochs if run.sink is sink)]
        end_epoch(epochs, epoch, logs, lambda: pack.evaluate(test_rows))
        for sink in training:
            sink.epoch_ended(epoch)
            if sink.stopping:  # pruned: its runs end with this epoch, the others train on
                for run in epochs:
                    if run.sink is sink:
                        run.done = True
        if all(run.done for run in epochs):
            break
    return epochs
