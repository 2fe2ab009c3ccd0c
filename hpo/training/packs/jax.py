"""The JAX fast path: Keras' own ``train_step``, vmapped over the replicas, scanned over an epoch.

On the JAX backend Keras' ``train_step(state, data)`` is a pure function of the model's state
(weights, optimizer slots, dropout seed states, metric accumulators). Here the R replica models'
states are stacked along a new leading axis (:class:`TrainState`) and one replica's
``train_step`` is ``jax.vmap``-ed over it, so every replica runs its solo step (its own weights,
dropout seed state, optimizer state and metrics) on its own batch; ``jax.lax.scan`` runs a whole
epoch of steps in one compiled call, with each replica's batch gathered on the device from one
table of examples.

Only replicas of one architecture (the same layers with the same configurations and variable
shapes, :func:`architecture`) can share a step, so the replicas (of several trials, when trials are
packed together) are grouped by architecture (:func:`stacked_groups`). XLA runs such small steps
on one core, so on a CPU the groups' epochs run from one thread per core
(:class:`~hpo.training.packs.base.GroupThreads`), the costliest first, and a group is split only
where the cores would otherwise wait for it.
The table of examples is an argument of the compiled functions, never a captured constant: XLA
compiles a large constant into the program, which makes compiling much slower.

A compiled epoch is a pure function of the stacked state, so it is kept (:data:`_COMPILED`) and
reused by every later pack of the same architecture, training settings and shapes: a trial
of an architecture seen before pays no trace and no compile.

Used where it is faster (:func:`applies`): no convolution layer, since with convolutions XLA's
CPU backend ran several times slower than Keras ``fit`` on the functional pack. The measurements
behind these choices are in benchmarks/PACKING.md.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
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
    scatter,
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


# The configuration of a layer whose get_config raises, in an architecture's text.
UNREADABLE = "<unreadable configuration>"
# Compiled epochs kept across packs: (architecture, settings, kind, argument shapes) -> executable.
_COMPILED: OrderedDict[tuple, Callable] = OrderedDict()
_COMPILED_KEPT = 64  # the least recently used is dropped beyond this many
_COMPILED_LOCK = threading.Lock()


class JaxPack:
    """A :class:`~hpo.training.packs.base.Pack` on the JAX backend (see the module).

    ``models`` must be prepared (:func:`~hpo.training.packs.base.prepare_replicas`); ``x``,
    ``y`` (targets, encoded for the loss) and ``val_rows`` ((n_val, R)) as
    :func:`hpo.training.packs.make_pack` passes them. The stacked states are the training
    state; ``models[i]`` gets replica i's weights after every :meth:`fit_epoch`, so that Keras'
    ``EarlyStopping`` can watch and restore them, and :meth:`evaluate` reads the weights back
    from the models.
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
        cores = _parallel_groups()
        # A model whose configuration cannot be read fully may hide what differs between jobs
        # (trials): it is stacked with its own job's replicas only (build_replicas sets ``job``).
        architectures = [architecture(model) for model in self.models]
        architectures = [f"{text} job {getattr(model, 'job', None)}" if UNREADABLE in text
                         else text for text, model in zip(architectures, self.models, strict=True)]
        self.groups = stacked_groups(architectures, [m.count_params() for m in self.models],
                                     cores)
        # Each group runs its first replica's steps, vmapped over the group; the table is shared.
        self._steps = [self.models[group[0]] for group in self.groups]
        self._keys = [(architectures[group[0]], repr(spec)) for group in self.groups]
        self._states = [self._state(group, TrainState) for group in self.groups]
        self._own: dict[tuple, Callable] = {}  # this pack's compiled epochs that are not kept
        self._threads = GroupThreads(min(cores, len(self.groups)))

    def fit_epoch(self, rows: np.ndarray) -> list[dict[str, float]]:
        """Train one epoch on ``rows`` ((n_train, R) example rows), then validate."""
        batches = [split_batches(rows[:, group], self.batch_size) for group in self.groups]
        args = [(state, *batch, self.table, self.targets)
                for state, batch in zip(self._states, batches, strict=True)]
        results = self._run("train", args)
        self._states = [state for state, _ in results]
        self._sync_models()
        logs = self._per_replica([log for _, log in results])
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
        return self._per_replica([log for _, log in self._run("test", args)])

    def _run(self, kind: str, args: list) -> list:
        """Call each group's compiled ``kind`` epoch once; compiled up front (or found compiled
        by an earlier pack) so that the threads only execute."""
        calls = []
        for g, arguments in enumerate(args):
            shapes = tuple((a.shape, str(a.dtype)) for a in jax.tree.leaves(arguments))
            key = (*self._keys[g], kind, shapes)
            kept = UNREADABLE not in key[0]  # kept for later packs only if fully described
            with _COMPILED_LOCK:
                compiled = _COMPILED.get(key) if kept else self._own.get(key)
                if compiled is not None and kept:
                    _COMPILED.move_to_end(key)
            if compiled is None:
                step = self._steps[g].train_step if kind == "train" else self._steps[g].test_step
                state_type = TrainState if kind == "train" else EvalState
                compiled = jax.jit(_epoch_function(step, state_type)).lower(*arguments).compile()
                with _COMPILED_LOCK:
                    (_COMPILED if kept else self._own)[key] = compiled
                    while len(_COMPILED) > _COMPILED_KEPT:
                        _COMPILED.popitem(last=False)
            calls.append(functools.partial(_execute, compiled, arguments))
        return self._threads.run(calls)

    def _per_replica(self, group_logs: list[dict]) -> list[dict[str, float]]:
        """Each group's stacked logs → one ``{name: float}`` per replica, in replica order."""
        per_group = []
        for logs in group_logs:
            arrays = {k: np.asarray(v) for k, v in logs.items()}
            size = len(next(iter(arrays.values())))
            per_group.append([{k: float(v[j]) for k, v in arrays.items()} for j in range(size)])
        return scatter(self.groups, per_group)

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


def stacked_groups(architectures: Sequence[str], costs: Sequence[float],
                   parallel: int) -> list[list[int]]:
    """Replica indices grouped by architecture, the costliest groups first.

    Each group is one stacked program on one core, and its per-step overhead (dispatching its
    kernels) is paid once for all its replicas, so groups are kept whole where the cores can be
    kept busy otherwise: the costliest group is halved while there are fewer groups than
    ``parallel`` cores, or while it alone costs more than a core's fair share (the total over
    ``parallel``). The threads then take the groups costliest first.

    Example:
        >>> stacked_groups(["a", "b", "a", "a", "b"], [1, 9, 1, 1, 9], 2)
        [[1], [4], [0, 2, 3]]
        >>> stacked_groups(["a"] * 4, [1] * 4, 2)
        [[0, 1], [2, 3]]
    """
    def cost(group: list[int]) -> float:
        return sum(costs[i] for i in group)

    groups: dict[str, list[int]] = {}
    for i, name in enumerate(architectures):
        groups.setdefault(name, []).append(i)
    stacked = list(groups.values())
    share = sum(costs) / max(1, parallel)
    while True:
        costliest = max(stacked, key=cost)
        if len(costliest) < 2 or (len(stacked) >= parallel and cost(costliest) <= share):
            break
        stacked.remove(costliest)
        half = (len(costliest) + 1) // 2
        stacked += [costliest[:half], costliest[half:]]
    return sorted(stacked, key=lambda group: (-cost(group), group[0]))


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


def applies(models: Sequence) -> bool:
    """True for replicas without convolutions (of any architectures: see :func:`stacked_groups`).
    """
    return not any(map(has_convolution, models))


def architecture(model) -> str:
    """What must be equal for two replicas to share one ``train_step``, as text.

    The stacked path runs one replica's ``train_step`` for its whole group: a replica with the
    same variable shapes but another activation or dropout rate would silently be trained as
    the other's architecture, so shapes alone are not enough.

    The class and configuration of the model and of every layer in it, and the shape and dtype
    of every variable. Layer names are replaced by their order of appearance, since each
    replica's layers get their own names (``dense_3``); ``seed`` keys are left out, since seeds
    only set initial states, which live in the stacked variables. A layer whose configuration
    cannot be read counts by its class and :data:`UNREADABLE`: such replicas are stacked only
    with replicas of the same job, and their compiled epochs are not kept.
    """
    layers = all_layers(model)
    configs = []
    for layer in layers:
        try:
            configs.append(layer.get_config())
        except Exception:  # NotImplementedError: a subclassed layer without get_config
            configs.append(UNREADABLE)
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
