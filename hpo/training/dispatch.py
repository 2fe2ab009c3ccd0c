"""Choosing the trainer for a trial's seeds: packed (the default) or solo.

Example:
    >>> from hpo.training.dispatch import train_runs  # (job, seeds, sink, pack) -> {seed: history}
"""

from __future__ import annotations

from collections.abc import Sequence

from hpo.training.job import RunSink, TrainingJob
from hpo.training.packed import pack_size, train_packed
from hpo.training.solo import train_solo


def train_runs(job: TrainingJob, seeds: Sequence[int], sink: RunSink,
               pack: bool | int = True) -> dict[int, dict]:
    """Train ``job`` once per seed; return the histories of the runs that completed.

    ``pack``: True packs as many seeds per model as fit in memory, an int packs that many,
    False trains one seed at a time (the plain solo loop). Seeds that do not fit in one pack
    are trained in several, one after another; a pruned trial (``sink.stopping``) starts no
    more.
    """
    seeds = list(seeds)
    if pack is False or len(seeds) == 1:
        return train_solo(job, seeds, sink)
    size = pack_size(pack, len(seeds), _count_params(job) if pack is True else 0)
    histories: dict[int, dict] = {}
    for start in range(0, len(seeds), size):
        if sink.stopping:  # a pruned trial starts no more seeds
            break
        chunk = seeds[start : start + size]
        trainer = train_packed if len(chunk) > 1 else train_solo
        histories.update(trainer(job, chunk, sink))
    return histories


def _count_params(job: TrainingJob) -> int:
    """The parameters of one model of ``job`` (0 when its builder fails: its runs will say)."""
    try:
        model = job.build(job.data.input_shape, job.data.n_classes, **job.model_params)
        return int(model.count_params())
    except Exception:  # the runs themselves will report what is wrong with the builder
        return 0
