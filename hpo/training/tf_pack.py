"""The TensorFlow fast path of the packed trainer: a whole epoch of Keras train steps, XLA-compiled.

Each replica keeps its own Keras model (weights, optimizer slots, dropout seed state, metrics)
and its own ``train_step``; one ``tf.function(jit_compile=True)`` calls every replica's
``train_step`` on its gathered batch inside a ``tf.while_loop`` over the epoch's steps, so an
epoch is one XLA call instead of one Python dispatch (and one un-fused TensorFlow graph) per step.
Validation and test are the same with ``test_step``. The models' variables are updated in place,
so they always hold the replicas' current weights (Keras' ``EarlyStopping`` watches and restores
them) and the replicas may differ in architecture.

As with JAX, XLA runs steps this small on one core, so on a CPU the replicas are split into one
group per core, each group's epoch run from its own thread. Measured on a 2-core CPU (full MNIST,
10 replicas of the assignment's MLP): 2.6 s per epoch compiled in one group, 1.6 s in two (``fit``
on the functional packed model: 69.1 s for a whole three-epoch process, this path 24–30 s); once
per trial, tracing the ten train steps takes ≈ 2 s and XLA compiling them ≈ 3.5 s (validation
≈ 1.4 s more). The example table is an argument of the compiled function, never a captured
constant (as in :mod:`hpo.training.jax_pack`).

Keras turns XLA off when TensorFlow's op determinism is on (``model_supports_jit``: not every
op has a deterministic XLA kernel on a GPU); on the CPU XLA is deterministic, and an explicit
``jit_compile=True`` is honoured. Used where :func:`applies`: no convolution layer (on JAX,
XLA's CPU convolutions were several times slower than ``fit``), no layer that draws random
numbers in training (dropout: XLA's random kernels give other numbers than TensorFlow's for the
same seed, so a replica would no longer be its solo run; on JAX both are XLA), no max pooling,
and every layer supports XLA by Keras' own flag (``Layer.supports_jit``). A model with an op XLA
cannot compile anyway falls back to the functional pack before anything is trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hpo.config import TrainSpec
from hpo.training.packed import (
    FastPathUnavailable,
    all_layers,
    cpu_cores,
    has_convolution,
    replica_groups,
    split_batches,
)
from hpo.training.solo import EVAL_BATCH_SIZE

# Evaluation gathers a whole split in one batch when its examples take at most this much memory.
EVALUATION_BYTES = 256 * 1024**2


class TfPack:
    """R replica models trained together on the TensorFlow backend (see the module docstring)."""

    def __init__(self, models: Sequence, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 train: TrainSpec) -> None:
        import tensorflow as tf

        self.models = list(models)
        self.batch_size = train.batch_size
        self.table, self.targets = tf.constant(x), tf.constant(y)
        self.val_rows = val_rows
        self.groups = replica_groups(len(self.models), _parallel_groups())
        members = [[self.models[i] for i in group] for group in self.groups]
        self._train = [_epoch_function(replicas, "train_step") for replicas in members]
        self._test = [_epoch_function(replicas, "test_step") for replicas in members]
        self._pool = ThreadPoolExecutor(len(self.groups)) if len(self.groups) > 1 else None
        self._compiled = False
        self._validation: list | None = None  # the same batches every epoch: cut once

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch on ``rows`` ((n_train, R) example rows), then validate.

        In the first epoch, an op XLA cannot compile (TensorFlow raises Unimplemented, or
        "unsupported operations" at the first call) raises
        :class:`~hpo.training.packed.FastPathUnavailable`: nothing is recorded yet, and the
        caller trains freshly built replicas without XLA instead.
        """
        if self._compiled:
            return self._fit_epoch(rows)
        import tensorflow as tf

        try:
            logs = self._fit_epoch(rows)
        except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError) as exc:
            if isinstance(exc, tf.errors.InvalidArgumentError) and "XLA" not in str(exc):
                raise
            raise FastPathUnavailable(str(exc).splitlines()[0]) from exc
        self._compiled = True
        return logs

    def _fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        self._reset_metrics()
        training = self._start(self._calls(self._train, rows, self.batch_size))
        if self._validation is None:
            # Traced while the first training epoch compiles and runs (XLA releases the GIL).
            self._validation = list(self._calls(self._test, self.val_rows, None))
        logs = self._finish(training)
        self._reset_metrics()
        val = self._finish(self._start(self._validation))
        return [{**t, **{f"val_{k}": v for k, v in vl.items()}}
                for t, vl in zip(logs, val, strict=True)]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` ((n, R)) with its model's current weights."""
        self._reset_metrics()
        return self._finish(self._start(self._calls(self._test, rows, None)))

    def _calls(self, functions: list, rows: np.ndarray, batch_size: int | None):
        """Each group's (function, arguments) for ``rows``, traced; batch_size None: evaluation.

        Traced here, one group after another (Keras' tracing is not made for threads); XLA
        compiles at the first call, in the group's thread.
        """
        import tensorflow as tf

        for function, group in zip(functions, self.groups, strict=True):
            columns = rows[:, group]
            size = batch_size or self._evaluation_batch_size(columns)
            full, tail = split_batches(columns, size)
            # No loop over zero steps: XLA cannot compile a slice of an empty axis.
            arguments = (tf.constant(full) if len(full) else None,
                         None if tail is None else tf.constant(tail), self.table, self.targets)
            function.get_concrete_function(*arguments)
            yield function, arguments

    def _evaluation_batch_size(self, columns: np.ndarray) -> int:
        """All rows in one batch where their gathered examples fit in EVALUATION_BYTES.

        One batch means one step to trace and compile (batches of 1024 and a partial last
        one: two); metrics are means over all examples, so only float rounding changes.
        """
        n, replicas = columns.shape
        row_bytes = self.table.shape[1:].num_elements() * self.table.dtype.size
        one_batch = n * replicas * row_bytes <= EVALUATION_BYTES
        return max(n, 1) if one_batch else max(self.batch_size, EVAL_BATCH_SIZE)

    def _start(self, calls) -> list:
        """Run each call, in the group's thread where there are several (futures), or now."""
        def run(function, arguments):
            return [{k: float(v) for k, v in logs.items()} for logs in function(*arguments)]

        if self._pool is None:
            return [run(*call) for call in calls]
        return [self._pool.submit(run, *call) for call in calls]

    def _finish(self, started: list) -> list[dict[str, float]]:
        results = started if self._pool is None else [future.result() for future in started]
        return [logs for group_logs in results for logs in group_logs]

    def _reset_metrics(self) -> None:
        for model in self.models:
            model.reset_metrics()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


def _epoch_function(models: Sequence, step: str):
    """A compiled ``(batches, tail, table, targets) -> [logs per replica]`` for a Keras step.

    ``batches``: (steps, R, batch) example rows, looped over, or None; ``tail``: (R, rest) rows
    of a last, smaller batch, or None. The logs are the replicas' metric results after the last
    batch, as ``fit`` and ``evaluate`` report them (the caller resets the metrics first).
    """
    import tensorflow as tf

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
    """True for replicas without convolutions or random layers whose layers all support XLA.

    Max pooling is left out too: with TF op determinism on, XLA refuses its gradient ("GPU
    MaxPool gradient ops do not yet have a deterministic XLA implementation", on the CPU too).
    Other ops XLA lacks are found when the first epoch compiles (:meth:`TfPack.fit_epoch`).
    """
    import keras

    unsupported = (keras.layers.MaxPooling1D, keras.layers.MaxPooling2D, keras.layers.MaxPooling3D)
    layers = [layer for model in models for layer in all_layers(model)]
    return (not any(map(has_convolution, models)) and not any(map(draws_random_numbers, models))
            and all(layer.supports_jit and not isinstance(layer, unsupported) for layer in layers))


def draws_random_numbers(model) -> bool:
    """True when a layer of ``model`` draws random numbers (dropout, noise) from a seed state.

    XLA's random number kernels give other numbers than TensorFlow's for the same seed (even
    with the same Philox algorithm), so such replicas would not be their solo runs.
    """
    return any(v.name == "seed_generator_state" for v in model.non_trainable_variables)


def _parallel_groups() -> int:
    """Groups to run at once: one per CPU core on the CPU, one on a GPU."""
    import tensorflow as tf

    return 1 if tf.config.list_physical_devices("GPU") else cpu_cores()
