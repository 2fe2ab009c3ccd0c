"""The JAX fast path of the packed trainer: whole epochs of Keras' own train step, compiled.

On the JAX backend Keras' ``train_step(state, data)`` is a pure function of the model's state
(weights, optimizer slots, dropout seed states, metric accumulators), so ``jax.lax.scan`` can run
it over every step of an epoch in one compiled call, each replica's batch gathered on the device
from one table of examples. The replicas are split into groups, one per CPU core (one on an
accelerator), each group's epoch run from its own thread; groups of one size share one compiled
function. A group holds its replicas in one of two layouts:

- **stacked** (:class:`Stacked`): one replica's ``train_step`` is ``jax.vmap``-ed over the
  replicas' states stacked on a new leading axis, so XLA sees one batched program;
- **branches** (:class:`Branches`): one functional model with a branch per replica and a loss that
  is the sum of theirs (:func:`hpo.training.packed.branches`), each replica's arithmetic exactly
  its solo run's.

Stacked is used unless the replicas differ in their variables' shapes (a builder may draw its
architecture from the seeded random state) or have a convolution layer: vmap turns convolutions
into grouped convolutions, which XLA's CPU backend ran 4.4× slower than separate ones (the CNN
benchmark: 518 s against 117 s).

Measured on a 2-core CPU, full MNIST, 10 replicas of the assignment's MLP, per epoch: ≈ 4.6 s
with Keras ``fit`` (one Python dispatch per step), ≈ 2.7 s stacked and scanned in one thread,
≈ 1.4 s in two (XLA runs steps this small on one core), ≈ 1.9 s as branches in two; compiling
the stacked epoch and evaluation took 1.5 s, the branches' 4.2 s. The table of examples is an
argument of the compiled functions, never a captured constant: a 190 MB constant made XLA
compile for 4 s instead of 0.6 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hpo.training.compile import compile_model
from hpo.training.packed import branches, output_logs
from hpo.training.solo import EVAL_BATCH_SIZE


class JaxPack:
    """R replica models trained together on the JAX backend (see the module docstring).

    ``models[i]`` holds replica i's weights after every :meth:`fit_epoch`, so that Keras'
    ``EarlyStopping`` can watch and restore it; :meth:`evaluate` reads the weights from the models.
    """

    def __init__(self, models: Sequence, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 train) -> None:
        import jax

        self.models = list(models)
        self.batch_size = train.batch_size
        self.eval_batch_size = max(train.batch_size, EVAL_BATCH_SIZE)
        if np.issubdtype(y.dtype, np.integer):
            y = y.astype("int32")  # JAX's default integer width; int64 would be cut with a warning
        self.table, self.targets = jax.device_put(x), jax.device_put(y)
        self.val_rows = val_rows
        self.groups = _groups(len(self.models), _parallel_groups())
        shapes = {tuple(tuple(v.shape) for v in model.variables) for model in self.models}
        stackable = len(shapes) == 1 and not any(map(_has_convolution, self.models))
        layout = Stacked if stackable else Branches
        self.layouts = [layout([self.models[i] for i in group], train, x, y)
                        for group in self.groups]
        self._functions: dict[tuple, object] = {}
        self._states = [layout.state(optimizer=True) for layout in self.layouts]
        self._pool = ThreadPoolExecutor(len(self.groups)) if len(self.groups) > 1 else None

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch on ``rows`` ((n_train, R) example rows), then validate."""
        results = self._run("train", self._states, rows, self.batch_size)
        self._states = [state for state, _ in results]
        for layout, state in zip(self.layouts, self._states, strict=True):
            layout.assign(state)
        logs = self._per_replica([log for _, log in results])
        val = self._evaluate([(s[0], s[1], s[3]) for s in self._states], self.val_rows)
        return [{**t, **{f"val_{k}": v for k, v in vl.items()}}
                for t, vl in zip(logs, val, strict=True)]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` ((n, R)) with its model's current weights."""
        return self._evaluate([layout.state(optimizer=False) for layout in self.layouts], rows)

    def _evaluate(self, states: list, rows: np.ndarray) -> list[dict[str, float]]:
        return self._per_replica([log for _, log in self._run("test", states, rows,
                                                              self.eval_batch_size)])

    def _per_replica(self, group_logs: list) -> list[dict[str, float]]:
        return [logs for layout, group in zip(self.layouts, group_logs, strict=True)
                for logs in layout.logs(group)]

    def _run(self, kind: str, states: list, rows: np.ndarray, batch_size: int) -> list:
        """One epoch function call per group; compiled up front so that threads only execute."""
        import jax

        calls = []
        for group, layout, state in zip(self.groups, self.layouts, states, strict=True):
            arguments = (state, *_batches(rows[:, group], batch_size), self.table, self.targets)
            # The step is stateless: groups of one size share the first such group's function.
            key = (kind, *(a.shape for a in jax.tree.leaves(arguments[1:3])))
            if key not in self._functions:
                step = layout.net.train_step if kind == "train" else layout.net.test_step
                function = jax.jit(_epoch_function(layout.one_step(step)))
                self._functions[key] = function.lower(*arguments).compile()
            calls.append((self._functions[key], arguments))

        def run(call):
            compiled, arguments = call
            return jax.block_until_ready(compiled(*arguments))

        if self._pool is None:
            return [run(call) for call in calls]
        return list(self._pool.map(run, calls))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()


class Branches:
    """A group of replicas as one functional model with a branch per replica."""

    def __init__(self, models: Sequence, train, x: np.ndarray, y: np.ndarray) -> None:
        import keras

        inputs = keras.Input(shape=(len(models), *x.shape[1:]))
        self.net, self.names = branches(models, inputs, lambda batch, j: batch[:, j])
        compile_model(self.net, train, outputs=self.names)
        # What fit does first: create the optimizer and metric variables (train_step's state).
        batch = np.zeros((train.batch_size, len(models), *x.shape[1:]), x.dtype)
        self.net._symbolic_build(data_batch=(
            batch, {name: y[: train.batch_size] for name in self.names}, None))

    def one_step(self, step):
        """``step`` on the group's (batch, R) example rows."""
        import jax.numpy as jnp

        def one(state, rows, table, targets):
            x = jnp.take(table, rows, axis=0)  # (batch, R, *example shape)
            y = {name: jnp.take(targets, rows[:, j], axis=0) for j, name in enumerate(self.names)}
            logs, state = step(state, (x, y))
            return state, logs

        return one

    def state(self, optimizer: bool) -> tuple:
        return _state(self.net, optimizer)

    def assign(self, state: tuple) -> None:
        """Trained weights back into the net's variables, which are the replica models'."""
        _assign(self.net, state)

    def logs(self, logs: dict) -> list[dict[str, float]]:
        logs = {k: float(np.asarray(v)) for k, v in logs.items()}
        if len(self.names) == 1:  # Keras names a single output's metrics without its name
            logs = {f"{self.names[0]}_{k}": v for k, v in logs.items()}
        return [output_logs(logs, name) for name in self.names]


class Stacked:
    """A group of replicas as their states stacked on a leading axis, one replica's step vmapped."""

    def __init__(self, models: Sequence, train, x: np.ndarray, y: np.ndarray) -> None:
        self.models = list(models)
        for model in self.models:
            compile_model(model, train)
            # What fit does first: create the optimizer and metric variables (train_step's state).
            model._symbolic_build(data_batch=(x[: train.batch_size], y[: train.batch_size], None))
        self.net = self.models[0]  # whose step is vmapped over every replica's state

    def one_step(self, step):
        """``step`` vmapped over the replicas; rows (batch, R), column j for replica j."""
        import jax
        import jax.numpy as jnp

        def replica(state, rows, table, targets):
            logs, state = step(state, (jnp.take(table, rows, axis=0),
                                       jnp.take(targets, rows, axis=0)))
            return state, logs

        vmapped = jax.vmap(replica, in_axes=(0, 0, None, None))

        def one(state, rows, table, targets):
            return vmapped(state, rows.T, table, targets)

        return one

    def state(self, optimizer: bool) -> tuple:
        import jax.numpy as jnp

        states = [_state(model, optimizer) for model in self.models]
        return tuple([jnp.stack(column) for column in zip(*part, strict=True)]
                     for part in zip(*states, strict=True))

    def assign(self, state: tuple) -> None:
        for j, model in enumerate(self.models):
            _assign(model, tuple([value[j] for value in part] for part in state[:2]))

    def logs(self, logs: dict) -> list[dict[str, float]]:
        arrays = {k: np.asarray(v) for k, v in logs.items()}
        return [{k: float(v[j]) for k, v in arrays.items()} for j in range(len(self.models))]


def _has_convolution(model) -> bool:
    import keras

    convolutions = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                    keras.layers.SeparableConv1D, keras.layers.SeparableConv2D,
                    keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
                    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                    keras.layers.Conv3DTranspose)
    return any(isinstance(layer, convolutions) or
               (hasattr(layer, "layers") and _has_convolution(layer))
               for layer in getattr(model, "layers", []))


def _state(net, optimizer: bool) -> tuple:
    """The net's state as Keras' train step (or, without optimizer, test step) takes it."""
    values = [[v.value for v in variables] for variables in
              (net.trainable_variables, net.non_trainable_variables)]
    if optimizer:
        values.append([v.value for v in net.optimizer.variables])
    values.append([v.value for v in net.metrics_variables])
    return tuple(values)


def _assign(net, state: tuple) -> None:
    """Put trained weights (``state[:2]``) back into the net's variables."""
    for variables, values in zip((net.trainable_variables, net.non_trainable_variables),
                                 state[:2], strict=True):
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)


def _epoch_function(one_step):
    """``(state, batches, tail, table, targets) -> (state, logs)`` for one step function.

    ``batches``: (steps, batch, R) example rows, scanned; ``tail``: (rest, R) rows of a last,
    smaller batch, or None. The metrics start from zero (fresh accumulators are zeros for every
    Keras metric); the logs are the metric results after the last batch, as ``fit`` and
    ``evaluate`` report them.
    """
    import jax
    import jax.numpy as jnp

    def epoch(state, batches, tail, table, targets):
        metrics = [jnp.zeros_like(v) for v in state[-1]]
        state = (*state[:-1], metrics)
        state, logs = jax.lax.scan(lambda s, rows: one_step(s, rows, table, targets), state,
                                   batches)
        logs = jax.tree.map(lambda v: v[-1], logs) if batches.shape[0] else None
        if tail is not None:
            state, logs = one_step(state, tail, table, targets)
        return state, logs

    return epoch


def _batches(rows: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(n, R) rows → ((steps, batch, R) full batches, (rest, R) last batch or None)."""
    n, replicas = rows.shape
    steps = n // batch_size
    full = rows[: steps * batch_size].reshape(steps, batch_size, replicas)
    tail = rows[steps * batch_size :] if n % batch_size else None
    return np.ascontiguousarray(full), None if tail is None else np.ascontiguousarray(tail)


def _groups(replicas: int, parallel: int) -> list[list[int]]:
    """Split replica indices into ``parallel`` contiguous groups of near-equal size.

    Example:
        >>> _groups(10, 2), _groups(3, 2), _groups(2, 4)
        ([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]], [[0, 1], [2]], [[0], [1]])
    """
    parallel = max(1, min(parallel, replicas))
    bounds = np.linspace(0, replicas, parallel + 1).round().astype(int)
    sizes = sorted(np.diff(bounds).tolist(), reverse=True)
    starts = np.cumsum([0, *sizes])
    return [list(range(s, s + n)) for s, n in zip(starts, sizes, strict=False)]


def _parallel_groups() -> int:
    """Groups to run at once: one per CPU core on the CPU, one on an accelerator."""
    import os

    import jax

    if jax.default_backend() != "cpu":
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
