"""What every pack is and shares: the :class:`Pack` interface and its implementations' helpers.

A pack trains a trial's R seeded runs together as *replicas*: replica i is the user's model built
right after ``set_random_seed(seeds[i])`` (:func:`build_replicas`), so its initial weights and
dropout seed are its solo run's, and it is fed its solo run's batches. How the replicas run
together is the pack's business: one functional Keras model trained by ``fit``
(:mod:`~hpo.training.packs.functional`, any backend and model), or a backend's fast path that runs a
whole epoch as one XLA-compiled call (:mod:`~hpo.training.packs.tf`,
:mod:`~hpo.training.packs.jax`). The fast paths import this module only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

from hpo._imports import LazyImport
from hpo.config import TrainSpec
from hpo.training.backend import seed_everything
from hpo.training.compile import compile_model
from hpo.training.job import TrainingJob

keras = LazyImport("keras")

T = TypeVar("T")


class Pack(Protocol):
    """R replica models trained together, one epoch per call; the backend-specific part of packing.

    :func:`hpo.training.packs.make_pack` builds one for a trial's seeds; the packed trainer
    (:mod:`hpo.training.packed`) then calls :meth:`fit_epoch` once per epoch, in order, and
    :meth:`evaluate` after an epoch that was some replica's last when the spec evaluates the
    test split, and :meth:`close` once at the end, whatever happened. After each call it applies
    the epoch rules (:mod:`hpo.training.epochs`) to each replica through :attr:`models`.

    Row arrays are ``(n, R)`` integer arrays of example rows (of the table the pack was made
    with): column i is replica i's examples, in the order replica i sees them. Logs are one
    ``{name: float}`` per replica, ``[i]`` for replica i, keyed as its solo run's Keras logs.
    """

    models: list
    """``models[i]`` is replica i's Keras model, holding its current weights after every
    :meth:`fit_epoch`: Keras' ``EarlyStopping`` watches it and puts its kept weights back,
    and :meth:`evaluate` reads the weights from it."""

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train every replica for one epoch on ``rows`` ((n_train, R)), then validate.

        Called once per epoch. Every replica trains, also one whose run already ended (the
        trainer ignores its logs).

        Returns:
            Each replica's logs as its solo ``fit`` reports them: ``loss`` and the metrics of
            the epoch's training batches, ``val_*`` on its validation rows, which the pack was
            made with.

        Raises:
            FastPathUnavailable: only from a fast path's first call, before anything was
                trained or reported; the caller closes this pack and makes a functional one.
        """
        ...

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` ((n, R)) with its model's current weights.

        Called with the test split's rows, after the :meth:`fit_epoch` of an epoch that was
        some replicas' last, when the spec evaluates the test split: at most once per epoch,
        perhaps before more epochs of the others. Changes nothing the next :meth:`fit_epoch`
        uses.

        Returns:
            Each replica's ``loss`` and metrics, without a prefix.
        """
        ...

    def close(self) -> None:
        """Release what the pack holds (its threads); called once, last."""
        ...


class FastPathUnavailable(RuntimeError):
    """A fast path cannot compile these replicas (an op XLA lacks); nothing was trained yet."""


def build_replicas(jobs: Sequence[TrainingJob], seeds: Sequence[int]) -> list:
    """One model per replica, ``jobs[i]``'s model built right after ``set_random_seed(seeds[i])``
    as its solo run's is; ``model.job`` numbers the distinct jobs (trials) in order.

    Raises TypeError when a builder returns something other than a ``keras.Model``.
    """
    keras.backend.clear_session()
    replicas = []
    numbers: dict[int, int] = {}  # id(job) -> its number among the distinct jobs
    for i, (job, seed) in enumerate(zip(jobs, seeds, strict=True)):
        seed_everything(seed)  # the solo run's initial weights and dropout seed
        model = job.build(job.data.input_shape, job.data.n_classes, **job.model_params)
        if not isinstance(model, keras.Model):
            raise TypeError(f"the builder returned {type(model).__name__}, not a keras.Model")
        model.name = f"replica_{i}"  # builders name their models; names must be unique here
        model.stop_training = False  # what EarlyStopping sets on the model it watches
        model.job = numbers.setdefault(id(job), len(numbers))  # which job (trial) it belongs to
        replicas.append(model)
    return replicas


def prepare_replicas(models: Sequence, x: np.ndarray, y: np.ndarray, spec: TrainSpec) -> None:
    """Compile each replica and create its optimizer and metric variables, as ``fit`` does first.

    A fast path's compiled epoch updates these variables; they must exist before it is traced.
    ``Model._symbolic_build`` is private Keras API: Keras 3 has no public way to build the
    optimizer and compiled metrics without training a step.
    """
    for model in models:
        compile_model(model, spec)
        model._symbolic_build(data_batch=(x[: spec.batch_size], y[: spec.batch_size], None))


def split_batches(rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, R) rows → ((steps, R, batch) full batches, (R, rest) last batch or None).

    Example:
        >>> full, tail = split_batches(np.arange(10).reshape(5, 2), 2)
        >>> full.shape, tail.tolist()
        ((2, 2, 2), [[8], [9]])
    """
    n, replicas = rows.shape
    steps = n // batch_size
    full = rows[: steps * batch_size].reshape(steps, batch_size, replicas).transpose(0, 2, 1)
    tail = rows[steps * batch_size :].T if n % batch_size else None
    return np.ascontiguousarray(full), None if tail is None else np.ascontiguousarray(tail)


def replica_groups(costs: Sequence[float], parallel: int) -> list[list[int]]:
    """Split replica indices into at most ``parallel`` groups of near-equal total cost.

    A fast path runs one group per CPU core, each from its own thread (:class:`GroupThreads`):
    XLA runs steps this small on one core. Replicas of several trials differ in size (widths 2
    and 256 in one pack), so groups are balanced by cost (a replica's parameters), not count:
    the largest replica first, each to the group with the least cost so far. Each group lists
    its replicas in index order; replica order across groups is given back by :func:`scatter`.

    Example:
        >>> replica_groups([1] * 4, 2), replica_groups([1] * 3, 2), replica_groups([1] * 2, 4)
        ([[0, 2], [1, 3]], [[0, 2], [1]], [[0], [1]])
        >>> replica_groups([256, 2, 4, 8, 128], 2)
        [[0], [1, 2, 3, 4]]
    """
    parallel = max(1, min(parallel, len(costs)))
    groups: list[list[int]] = [[] for _ in range(parallel)]
    loads = [0.0] * parallel
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        lightest = min(range(parallel), key=lambda g: (loads[g], g))
        groups[lightest].append(i)
        loads[lightest] += costs[i]
    return [sorted(group) for group in groups if group]


def scatter(groups: Sequence[Sequence[int]], per_group: Sequence[Sequence[T]]) -> list[T]:
    """Per-group results (``per_group[g][j]`` is replica ``groups[g][j]``'s) in replica order.

    Example:
        >>> scatter([[0, 2], [1]], [["a", "c"], ["b"]])
        ['a', 'b', 'c']
    """
    out: dict[int, T] = {}
    for group, results in zip(groups, per_group, strict=True):
        out.update(zip(group, results, strict=True))
    return [out[i] for i in range(len(out))]


class GroupThreads:
    """Runs one call per replica group on ``threads`` threads (the calling thread when one).

    Both fast paths run a group's compiled epoch as one call; XLA releases the GIL while it
    runs, so the groups' calls run on separate cores at once. With more groups than threads the
    calls queue, in the order they are started. With one thread (one core, or an accelerator)
    calls run in the calling thread and no thread is started.

    Example:
        >>> threads = GroupThreads(2)
        >>> started = threads.start(lambda i=i: i * i for i in range(3))
        >>> threads.results(started), threads.run([lambda: "one"])
        ([0, 1, 4], ['one'])
        >>> threads.close()
    """

    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def start(self, calls: Iterable[Callable[[], T]]) -> list[Future[T]]:
        """Start each call as ``calls`` yields it (so the caller may prepare the next call
        while the previous one runs); return their futures, in order. Without threads each
        call runs now, and its exception propagates from here."""
        started: list[Future[T]] = []
        for call in calls:
            if self._pool is not None:
                started.append(self._pool.submit(call))
                continue
            done: Future[T] = Future()
            done.set_result(call())
            started.append(done)
        return started

    @staticmethod
    def results(started: Sequence[Future[T]]) -> list[T]:
        """Wait for calls from :meth:`start`; their results in order (the first error raises)."""
        return [future.result() for future in started]

    def run(self, calls: Iterable[Callable[[], T]]) -> list[T]:
        """:meth:`start` the calls and wait for their :meth:`results`."""
        return self.results(self.start(calls))

    def close(self) -> None:
        """Stop the threads (after the calls already started)."""
        if self._pool is not None:
            self._pool.shutdown()


def cpu_cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def has_convolution(model: keras.Model) -> bool:
    """True when ``model`` (or a model nested in it) has a convolution layer.

    The fast paths leave convolutions to ``fit``: XLA's CPU convolutions ran several times
    slower inside a compiled epoch (benchmarks/PACKING.md).
    """
    convolutions = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
                    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
                    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                    keras.layers.Conv3DTranspose)
    return any(isinstance(layer, convolutions) for layer in all_layers(model))


def all_layers(model: keras.layers.Layer) -> list:
    """``model`` and every layer in it, nested models' layers included."""
    nested = getattr(model, "layers", [])
    return [model, *(inner for layer in nested for inner in all_layers(layer))]
