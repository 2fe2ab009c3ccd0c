"""The TensorFlow fast path: a whole epoch of the replicas' own Keras train steps, XLA-compiled.

Each replica keeps its own Keras model (weights, optimizer slots, dropout seed state, metrics)
and its own ``train_step``; one ``tf.function(jit_compile=True)`` calls every replica's
``train_step`` on its gathered batch inside a ``tf.while_loop`` over the epoch's steps, so an
epoch is one XLA call instead of one Python dispatch (and one un-fused TensorFlow graph) per step.
Validation and test are the same with ``test_step``. The models' variables are updated in place,
so they always hold the replicas' current weights (Keras' ``EarlyStopping`` watches and restores
them) and the replicas may differ in architecture (trials packed together: widths 2 and 256).

XLA runs steps this small on one core, so on a CPU the replicas are split into one group per
core, balanced by parameters, each group's epoch run from its own thread
(:class:`~hpo.training.packs.base.GroupThreads`).
The example table is an argument of the compiled function, never a captured constant: XLA
compiles a large constant into the program, which makes compiling much slower. The figures behind
these choices are in benchmarks/PACKING.md.

Keras turns XLA off when TensorFlow's op determinism is on (``model_supports_jit``: not every
op has a deterministic XLA kernel on a GPU); on the CPU XLA is deterministic, and an explicit
``jit_compile=True`` is honoured. Used where :func:`applies`: no convolution layer (XLA's CPU
convolutions ran slower than ``fit``), no max pooling, and every layer supports XLA by Keras' own
flag (``Layer.supports_jit``). A model with an op XLA cannot compile anyway falls back to the
functional pack before anything is trained (:meth:`TfPack.fit_epoch`).

Dropout is taken: XLA's random kernels draw other masks than TensorFlow's for the same seed, so
a replica here differs from a Keras ``fit`` of its seed; but a solo run whose model this path
takes is itself a pack of one (:func:`hpo.training.packed.train_alone`), so a replica draws its
solo run's masks by construction.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence

import numpy as np

from hpo._imports import LazyImport
from hpo.config import TrainSpec
from hpo.training.job import EVAL_BATCH_SIZE
from hpo.training.packs.base import (
    FastPathUnavailable,
    GroupThreads,
    all_layers,
    cpu_cores,
    has_convolution,
    replica_groups,
    scatter,
    split_batches,
)

keras = LazyImport("keras")
tf = LazyImport("tensorflow")

# Evaluation gathers a whole split in one batch when its examples take at most this much memory.
EVALUATION_BYTES = 256 * 1024**2


class TfPack:
    """A :class:`~hpo.training.packs.base.Pack` on the TensorFlow backend (see the module).

    ``models`` must be prepared (:func:`~hpo.training.packs.base.prepare_replicas`); ``x``,
    ``y`` (targets, encoded for the loss) and ``val_rows`` ((n_val, R)) as
    :func:`hpo.training.packs.make_pack` passes them.
    """

    def __init__(self, models: Sequence, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 spec: TrainSpec) -> None:
        self.models = list(models)
        self.batch_size = spec.batch_size
        self.table, self.targets = tf.constant(x), tf.constant(y)
        self.val_rows = val_rows
        self.groups = replica_groups([m.count_params() for m in self.models], _parallel_groups())
        members = [[self.models[i] for i in group] for group in self.groups]
        self._train = [_epoch_function(replicas, "train_step") for replicas in members]
        self._test = [_epoch_function(replicas, "test_step") for replicas in members]
        self._threads = GroupThreads(len(self.groups))
        self._compiled = False
        self._validation: list | None = None  # the same batches every epoch: cut once

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch on ``rows`` ((n_train, R) example rows), then validate.

        The first call is where XLA compiles every group's train and test steps. Any
        ``UnimplementedError`` or ``InvalidArgumentError`` in it (TensorFlow raises one of the
        two for an op XLA lacks, at the first call) raises
        :class:`~hpo.training.packs.base.FastPathUnavailable`: nothing is recorded yet, and the
        caller trains freshly built replicas on the functional pack instead. The decision is
        taken by the error's type and moment, never by its text; a genuine data error, which
        XLA did not cause, then fails again on the functional pack and fails the runs there.
        """
        if self._compiled:
            return self._fit_epoch(rows)
        try:
            logs = self._fit_epoch(rows)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as exc:
            # By type and moment (the first, compiling call), not by message text: see above.
            raise FastPathUnavailable(str(exc).splitlines()[0]) from exc
        self._compiled = True
        return logs

    def _fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        self._reset_metrics()
        training = self._threads.start(self._calls(self._train, rows, self.batch_size))
        if self._validation is None:
            # Traced while the first training epoch compiles and runs (XLA releases the GIL).
            self._validation = list(self._calls(self._test, self.val_rows, None))
        logs = scatter(self.groups, self._threads.results(training))
        self._reset_metrics()
        val = scatter(self.groups, self._threads.run(self._validation))
        return [{**t, **{f"val_{k}": v for k, v in vl.items()}}
                for t, vl in zip(logs, val, strict=True)]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` ((n, R)) with its model's current weights."""
        self._reset_metrics()
        return scatter(self.groups, self._threads.run(self._calls(self._test, rows, None)))

    def _calls(self, functions: list, rows: np.ndarray,
               batch_size: int | None) -> Iterator[functools.partial]:
        """Each group's call of its function on ``rows``, traced; batch_size None: evaluation.

        Traced here, one group after another (Keras' tracing is not made for threads); XLA
        compiles at the first call, in the group's thread.
        """
        for function, group in zip(functions, self.groups, strict=True):
            columns = rows[:, group]
            size = batch_size or self._evaluation_batch_size(columns)
            full, tail = split_batches(columns, size)
            # No loop over zero steps: XLA cannot compile a slice of an empty axis.
            arguments = (tf.constant(full) if len(full) else None,
                         None if tail is None else tf.constant(tail), self.table, self.targets)
            function.get_concrete_function(*arguments)
            yield functools.partial(_group_logs, function, arguments)

    def _evaluation_batch_size(self, columns: np.ndarray) -> int:
        """All rows in one batch where their gathered examples fit in EVALUATION_BYTES.

        One batch means one step to trace and compile (batches of 1024 and a partial last
        one: two); metrics are means over all examples, so only float rounding changes.
        """
        n, replicas = columns.shape
        row_bytes = self.table.shape[1:].num_elements() * self.table.dtype.size
        one_batch = n * replicas * row_bytes <= EVALUATION_BYTES
        return max(n, 1) if one_batch else max(self.batch_size, EVAL_BATCH_SIZE)

    def _reset_metrics(self) -> None:
        for model in self.models:
            model.reset_metrics()

    def close(self) -> None:
        """Stop the groups' threads."""
        self._threads.close()


def _group_logs(function, arguments: tuple) -> list[dict[str, float]]:
    """Run one group's compiled epoch; its replicas' logs as floats."""
    return [{k: float(v) for k, v in logs.items()} for logs in function(*arguments)]


def _epoch_function(models: Sequence, step: str):
    """A compiled ``(batches, tail, table, targets) -> [logs per replica]`` for a Keras step.

    ``batches``: (steps, R, batch) example rows, looped over, or None; ``tail``: (R, rest) rows
    of a last, smaller batch, or None. The logs are the replicas' metric results after the last
    batch, as ``fit`` and ``evaluate`` report them (the caller resets the metrics first).
    """
    steps = [getattr(model, step) for model in models]

    @tf.function(jit_compile=True, autograph=False)
    def epoch(batches, tail, table, targets):
        def run(rows):
            for i, replica_step in enumerate(steps):
                replica_step((tf.gather(table, rows[i]), tf.gather(targets, rows[i])))

        def body(i):
            run(batches[i])
            return (i + 1,)

        if batches is not None:
            tf.while_loop(lambda i: i < tf.shape(batches)[0], body, (tf.constant(0),))
        if tail is not None:
            run(tail)
        return [model.get_metrics_result() for model in models]

    return epoch


def applies(models: Sequence) -> bool:
    """True for replicas without convolutions whose layers all support XLA.

    Max pooling is left out too: with TF op determinism on, XLA refuses its gradient ("GPU
    MaxPool gradient ops do not yet have a deterministic XLA implementation", on the CPU too).
    Other ops XLA lacks are found when the first epoch compiles (:meth:`TfPack.fit_epoch`).
    """
    unsupported = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D)
    layers = [layer for model in models for layer in all_layers(model)]
    return not any(map(has_convolution, models)) and all(
        layer.supports_jit and not isinstance(layer, unsupported) for layer in layers)


def _parallel_groups() -> int:
    """Groups to run at once: one per CPU core on the CPU, one on a GPU."""
    return 1 if tf.config.list_physical_devices("GPU") else cpu_cores()
