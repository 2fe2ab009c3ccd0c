"""The JAX fast path: Keras' own ``train_step``, vmapped over the replicas, scanned over an epoch.

On the JAX backend Keras' ``train_step(state, data)`` is a pure function of the model's state
(weights, optimizer slots, dropout seed states, metric accumulators). Here the R replica models'
states are stacked along a new leading axis (:class:`TrainState`) and one replica's
``train_step`` is ``jax.vmap``-ed over it, so every replica runs its solo step (its own weights,
dropout seed state, optimizer state and metrics) on its own batch; ``jax.lax.scan`` runs a whole
epoch of steps in one compiled call, with each replica's batch gathered on the device from one
table of examples.

XLA runs such small steps on one core, so on a CPU the replicas are split into one group per
core, each group's epoch run from its own thread (:class:`~hpo.training.packs.base.GroupThreads`).
The table of examples is an argument of the compiled functions, never a captured constant: XLA
compiles a large constant into the program, which makes compiling much slower.

Used only where it is right and faster (:func:`applies`): replicas of one architecture (the
same layers with the same configurations and variable shapes) and no convolution layer: with
convolutions XLA's CPU backend ran several times slower than Keras ``fit`` on the functional
pack. The measurements behind these choices are in benchmarks/PACKING.md.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import NamedTuple, TypeVar

import numpy as np

from hpo._imports import LazyImport
from hpo.config import TrainSpec
from hpo.training.job import EVAL_BATCH_SIZE
from hpo.training.packs.base import (
    GroupThreads,
    all_layers,
    cpu_cores,
    has_convolution,
    replica_groups,
    split_batches,
)

jax = LazyImport("jax")
jnp = LazyImport("jax.numpy")


class EvalState(NamedTuple):
    """The state Keras' JAX ``test_step`` takes and returns: lists of arrays, one per variable
    (stacked: a leading replica axis)."""

    trainable: list
    non_trainable: list
    metrics: list


class TrainState(NamedTuple):
    """The state Keras' JAX ``train_step`` takes and returns, in its order: lists of arrays, one
    per variable (stacked: a leading replica axis)."""

    trainable: list
    non_trainable: list
    optimizer: list
    metrics: list

    def for_evaluation(self) -> EvalState:
        """The weights and metric accumulators, without the optimizer's slots."""
        return EvalState(self.trainable, self.non_trainable, self.metrics)


State = TypeVar("State", TrainState, EvalState)
# Where each field of a state comes from in a replica's model.
_VARIABLES: dict[str, Callable] = {
    "trainable": lambda model: model.trainable_variables,
    "non_trainable": lambda model: model.non_trainable_variables,
    "optimizer": lambda model: model.optimizer.variables,
    "metrics": lambda model: model.metrics_variables,
}


class JaxPack:
    """A :class:`~hpo.training.packs.base.Pack` on the JAX backend (see the module).

    ``models`` must be prepared (:func:`~hpo.training.packs.base.prepare_replicas`) and of one
    architecture (:func:`applies`); ``x``, ``y`` (targets, encoded for the loss) and
    ``val_rows`` ((n_val, R)) as :func:`hpo.training.packs.make_pack` passes them. The stacked
    states are the training state; ``models[i]`` gets replica i's weights after every
    :meth:`fit_epoch`, so that Keras' ``EarlyStopping`` can watch and restore them, and
    :meth:`evaluate` reads the weights back from the models.
    """

    def __init__(self, models: Sequence, x: np.ndarray, y: np.ndarray, val_rows: np.ndarray,
                 spec: TrainSpec) -> None:
        self.models = list(models)
        self.batch_size = spec.batch_size
        self.eval_batch_size = max(spec.batch_size, EVAL_BATCH_SIZE)
        if np.issubdtype(y.dtype, np.integer):
            y = y.astype("int32")  # JAX's default integer width; int64 would be cut with a warning
        self.table, self.targets = jax.device_put(x), jax.device_put(y)
        self.val_rows = val_rows
        self.groups = replica_groups(len(self.models), _parallel_groups())
        model = self.models[0]
        # One replica's steps, vmapped over the replica axis; the table is shared.
        self._train = jax.jit(_epoch_function(model.train_step, TrainState))
        self._test = jax.jit(_epoch_function(model.test_step, EvalState))
        self._compiled: dict[tuple, Callable] = {}
        self._states = [self._state(group, TrainState) for group in self.groups]
        self._threads = GroupThreads(len(self.groups))

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch on ``rows`` ((n_train, R) example rows), then validate."""
        batches = [split_batches(rows[:, group], self.batch_size) for group in self.groups]
        args = [(state, *batch, self.table, self.targets)
                for state, batch in zip(self._states, batches, strict=True)]
        results = self._run("train", self._train, args)
        self._states = [state for state, _ in results]
        self._sync_models()
        logs = _per_replica([log for _, log in results])
        val = self._evaluate_states([s.for_evaluation() for s in self._states], self.val_rows)
        return [{**t, **{f"val_{k}": v for k, v in vl.items()}}
                for t, vl in zip(logs, val, strict=True)]

    def evaluate(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Each replica's metrics on ``rows`` ((n, R)) with its model's current weights."""
        states = [self._state(group, EvalState) for group in self.groups]
        return self._evaluate_states(states, rows)

    def _evaluate_states(self, states: list[EvalState],
                         rows: np.ndarray) -> list[dict[str, float]]:
        batches = [split_batches(rows[:, group], self.eval_batch_size) for group in self.groups]
        args = [(state, *batch, self.table, self.targets)
                for state, batch in zip(states, batches, strict=True)]
        return _per_replica([log for _, log in self._run("test", self._test, args)])

    def _run(self, kind: str, function, args: list) -> list:
        """Call ``function`` once per group; compiled up front so threads only execute."""
        calls = []
        for arguments in args:
            key = (kind, *(a.shape for a in jax.tree.leaves(arguments[1:3])))
            if key not in self._compiled:
                self._compiled[key] = function.lower(*arguments).compile()
            calls.append(functools.partial(_execute, self._compiled[key], arguments))
        return self._threads.run(calls)

    def _state(self, group: Sequence[int], kind: type[State]) -> State:
        """The stacked ``kind`` of state of the replicas in ``group``, read from their models."""
        def stacked(variables):
            columns = zip(*([v.value for v in variables(self.models[i])] for i in group),
                          strict=True)
            return [jnp.stack(column) for column in columns]

        return kind(*(stacked(_VARIABLES[name]) for name in kind._fields))

    def _sync_models(self) -> None:
        for group, state in zip(self.groups, self._states, strict=True):
            for j, i in enumerate(group):
                model = self.models[i]
                for variable, value in zip(model.trainable_variables, state.trainable,
                                           strict=True):
                    variable.assign(value[j])
                for variable, value in zip(model.non_trainable_variables, state.non_trainable,
                                           strict=True):
                    variable.assign(value[j])

    def close(self) -> None:
        """Stop the groups' threads."""
        self._threads.close()


def _execute(compiled: Callable, arguments: tuple):
    return jax.block_until_ready(compiled(*arguments))


def _epoch_function(step: Callable, state_type: type[State]) -> Callable:
    """``(state, batches, tail, table, targets) -> (state, logs)`` for Keras' train/test step.

    ``state``: a ``state_type``, stacked; ``batches``: (steps, R, batch) example rows, scanned;
    ``tail``: (R, rest) rows of a last, smaller batch, or None. The metrics start from zero
    (fresh accumulators are zeros for every Keras metric); the logs are the replicas' metric
    results after the last batch, as ``fit`` and ``evaluate`` report them.
    """
    def replica_step(state, rows, table, targets):
        logs, state = step(state, (jnp.take(table, rows, axis=0), jnp.take(targets, rows, axis=0)))
        # Keras returns a plain tuple; scan needs the carry's structure (the NamedTuple) kept.
        return state_type(*state), logs

    vstep = jax.vmap(replica_step, in_axes=(0, 0, None, None))

    def epoch(state, batches, tail, table, targets):
        state = state._replace(metrics=[jnp.zeros_like(v) for v in state.metrics])
        state, logs = jax.lax.scan(lambda s, rows: vstep(s, rows, table, targets), state, batches)
        logs = jax.tree.map(lambda v: v[-1], logs) if batches.shape[0] else None
        if tail is not None:
            state, logs = vstep(state, tail, table, targets)
        return state, logs

    return epoch


def _per_replica(group_logs: list[dict]) -> list[dict[str, float]]:
    out = []
    for logs in group_logs:
        arrays = {k: np.asarray(v) for k, v in logs.items()}
        size = len(next(iter(arrays.values())))
        out.extend({k: float(v[j]) for k, v in arrays.items()} for j in range(size))
    return out


def applies(models: Sequence) -> bool:
    """True for replicas of one architecture (see :func:`architecture`) without convolutions.

    The stacked path runs replica 0's ``train_step`` for every replica: a replica with the
    same variable shapes but another activation or dropout rate would silently be trained as
    replica 0's architecture, so shapes alone are not enough.
    """
    architectures = {architecture(model) for model in models}
    return len(architectures) == 1 and not any(map(has_convolution, models))


def architecture(model) -> str:
    """What must be equal for two replicas to share one ``train_step``, as text.

    The class and configuration of the model and of every layer in it, and the shape and dtype
    of every variable. Layer names are replaced by their order of appearance, since each
    replica's layers get their own names (``dense_3``); ``seed`` keys are left out, since seeds
    only set initial states, which live in the stacked variables. A layer whose configuration
    cannot be read counts by its class alone.
    """
    layers = all_layers(model)
    configs = []
    for layer in layers:
        try:
            configs.append(layer.get_config())
        except Exception:  # NotImplementedError: a subclassed layer without get_config
            configs.append(None)
    names = [layer.name for layer in layers] + list(_input_layer_names(configs))
    positions = {name: f"<layer {i}>" for i, name in reversed(list(enumerate(names)))}

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items() if k != "seed"}
        if isinstance(value, list | tuple):
            return [canonical(v) for v in value]
        if isinstance(value, str):
            return positions.get(value, value)
        return value

    described = [(type(layer).__module__, type(layer).__qualname__, canonical(config))
                 for layer, config in zip(layers, configs, strict=True)]
    variables = [(tuple(v.shape), str(v.dtype)) for v in model.variables]
    return json.dumps([described, variables], sort_keys=True, default=repr)


def _input_layer_names(config):
    """Names of the InputLayers in a configuration (a nested Sequential model's input is in
    its configuration but not in its ``layers``)."""
    if isinstance(config, dict):
        if config.get("class_name") == "InputLayer" and isinstance(config.get("config"), dict):
            yield config["config"].get("name")
        for value in config.values():
            yield from _input_layer_names(value)
    elif isinstance(config, list | tuple):
        for value in config:
            yield from _input_layer_names(value)


def _parallel_groups() -> int:
    """Groups to run at once: one per CPU core on the CPU, one on an accelerator."""
    return cpu_cores() if jax.default_backend() == "cpu" else 1
