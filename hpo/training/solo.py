"""The solo trainer: one seeded run at a time.

A run whose model the backend's fast path takes trains as a pack of one
(:func:`hpo.training.packed.train_alone`): the same compiled step as a packed replica, so the
two draw the same numbers, dropout masks included. Any other run, and every run with ``fast``
False, is the plain loop here: one Keras ``fit`` per epoch.

Each epoch trains on the training set in the order :func:`hpo.stats.epoch_order` gives for
(seed, epoch), so a run's data order is a documented function of its seed rather than of Keras'
internal shuffling. After each epoch the run goes through :mod:`hpo.training.epochs`' rules, as
a packed replica does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hpo._imports import LazyImport
from hpo.config import uses_sparse_targets
from hpo.datasets.prepare import PreparedData, encode_targets
from hpo.errors import LeaseLost
from hpo.stats import epoch_order
from hpo.training.backend import seed_everything
from hpo.training.compile import compile_model
from hpo.training.epochs import RunEpochs, end_epoch
from hpo.training.job import (
    EVAL_BATCH_SIZE,
    STEPS_PER_EXECUTION,
    RunSink,
    TrainingJob,
    describe,
)
from hpo.training.packed import train_alone

keras = LazyImport("keras")


def train_solo(job: TrainingJob, seeds: Sequence[int], sink: RunSink,
               fast: bool = True) -> dict[int, dict]:
    """Train ``job`` once per seed, one after another; return the histories of completed runs.

    A run that raises is reported finished with its error and left out of the result; a
    pruned trial (``sink.stopping``) starts no more seeds. ``fast`` False trains every run with
    Keras ``fit`` (else a run goes through the fast path where one applies).
    """
    histories = {}
    for seed in seeds:
        if sink.stopping:
            break
        sink.run_started(seed)
        try:
            history = train_alone(job, seed, sink) if fast else None
            histories[seed] = history if history is not None else train_run(job, seed, sink)
        except LeaseLost:  # the sink's, not the run's: this worker no longer holds the trial
            raise
        except Exception as exc:  # a failed run is data, not the end of the sweep
            sink.run_finished(seed, describe(exc))
        else:
            sink.run_finished(seed, None)
    return histories


def train_run(job: TrainingJob, seed: int, sink: RunSink) -> dict[str, list[float]]:
    """Build, compile and fit one seeded run; report each epoch; return its history.

    Reports ``run_epoch`` and ``epoch_ended`` per epoch (``run_started`` and ``run_finished``
    are the caller's). Raises :class:`~hpo.training.job.NonFiniteLoss` after reporting an epoch
    whose loss is not finite, and whatever building or fitting raises.
    """
    spec = job.spec
    keras.backend.clear_session()  # a fresh graph per run: memory stays flat over a sweep
    seed_everything(seed)
    data = job.data.for_seed(seed)
    model = job.build(data.input_shape, data.n_classes, **job.model_params)
    if not isinstance(model, keras.Model):
        raise TypeError(f"the builder returned {type(model).__name__}, not a keras.Model")
    steps = -(-len(data.x_train) // spec.batch_size)
    compile_model(model, spec, steps_per_execution=min(STEPS_PER_EXECUTION, steps))
    sparse = uses_sparse_targets(spec.loss)
    y_train = encode_targets(data.y_train, data.n_classes, sparse)
    y_val = encode_targets(data.y_val, data.n_classes, sparse)
    eval_batch = max(spec.batch_size, EVAL_BATCH_SIZE)
    run = RunEpochs(seed, model, spec, sink)
    for epoch in range(1, spec.epochs + 1):
        order = epoch_order(seed, epoch - 1, len(data.x_train))
        fitted = model.fit(
            data.x_train[order],
            y_train[order],
            batch_size=spec.batch_size,
            epochs=epoch,
            initial_epoch=epoch - 1,
            validation_data=(data.x_val, y_val),
            validation_batch_size=eval_batch,
            shuffle=False,
            verbose=0,
            callbacks=[keras.callbacks.TerminateOnNaN()],
        )
        logs = {name: float(np.asarray(values[-1])) for name, values in fitted.history.items()}
        end_epoch([run], epoch, [logs], lambda: [_evaluate_test(model, data, sparse, eval_batch)])
        if run.failure is not None:
            raise run.failure
        sink.epoch_ended(epoch)
        if run.done or sink.stopping:
            break
    return run.history


def _evaluate_test(model: keras.Model, data: PreparedData, sparse: bool,
                   batch_size: int) -> dict[str, float]:
    y_test = encode_targets(data.y_test, data.n_classes, sparse)
    tested = model.evaluate(data.x_test, y_test, batch_size=batch_size, verbose=0,
                            return_dict=True)
    return {name: float(np.asarray(value)) for name, value in tested.items()}
