"""What a trainer is given and whom it tells: a :class:`TrainingJob` and a :class:`RunSink`.

Every trainer (:mod:`hpo.training.solo`, :mod:`hpo.training.packed`) takes a job, a trial's
seeds and a sink, and reports each seeded run to the sink in the same order, whether it trains
the runs one after another or packed in one model. The runner implements the sink (recording,
pruning, the progress display); tests use a sink that keeps what it is told.

Example:
    >>> from hpo.config import TrainSpec
    >>> job = TrainingJob(build=print, model_params={}, spec=TrainSpec(epochs=2), data=None)
    >>> job.spec.epochs, describe(NonFiniteLoss("loss became nan in epoch 3"))
    (2, 'NonFiniteLoss: loss became nan in epoch 3')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from hpo.config import TrainSpec
from hpo.datasets.prepare import DataSource

# Steps run per call into the backend: fewer Python round trips, the same arithmetic.
STEPS_PER_EXECUTION = 32
# Evaluation batch size: metrics are means over all examples, so it changes only float rounding,
# and large batches make validation several times cheaper than at the training batch size.
EVAL_BATCH_SIZE = 1024


@dataclass(frozen=True)
class TrainingJob:
    """One configuration: what to build, with which parameters, trained how, on what data.

    ``build(input_shape, n_classes, **model_params)`` returns a ``keras.Model``; ``spec`` says
    how it is compiled and fitted; ``data`` gives every seed its examples.
    """

    build: Callable[..., Any]
    model_params: Mapping[str, Any]
    spec: TrainSpec
    data: DataSource


class SeedRun(NamedTuple):
    """One seeded run to train: ``job`` under ``seed``, reported to ``sink``.

    Runs of several trials packed together have several jobs and sinks (and equal seeds).
    """

    job: TrainingJob
    seed: int
    sink: RunSink


class RunSink(Protocol):
    """Where a trainer reports a trial's seeded runs; the runner implements it.

    A *run* is one seed's training: a solo run, or one replica of a packed model. For each run
    the trainer calls :meth:`run_started`, then :meth:`run_epoch` once per epoch it trains, in
    epoch order, :meth:`run_trained` if it did not fail, then :meth:`run_finished`. After
    every epoch of the runs it is training right now it calls :meth:`epoch_ended` and then
    reads :attr:`stopping`. A solo trainer goes
    through these steps for one seed after another; a packed trainer starts all of its seeds,
    reports their epochs interleaved (each epoch: every replica's :meth:`run_epoch`, then one
    :meth:`epoch_ended`) and finishes them together.

    Any method may raise :class:`~hpo.errors.LeaseLost` (this worker no longer holds the trial):
    trainers let it through, never recording it as a run's failure.
    """

    stopping: bool
    """True once the trial is pruned. Read after each :meth:`epoch_ended` and before a trainer
    starts a seed or a pack of seeds: when set, the trainer ends its runs after the epoch just
    reported (they are finished without an error) and starts no more."""

    def run_started(self, seed: int) -> None:
        """``seed``'s run is about to train: called once, before its first :meth:`run_epoch`.

        A packed trainer calls it for every seed of a pack before the pack's first epoch.
        """
        ...

    def run_epoch(self, seed: int, epoch: int, logs: Mapping[str, float]) -> None:
        """One run's Keras logs for ``epoch`` (1-based): ``loss``, metrics, ``val_*``.

        Called once per trained epoch of the run, in epoch order, before that epoch's
        :meth:`epoch_ended`. The run's last epoch's logs also hold ``test_*`` values when the
        spec evaluates the test split (after early stopping restored the kept weights). An
        epoch whose loss is NaN or infinite is reported too; :meth:`run_finished` then gives
        the run's failure.
        """
        ...

    def epoch_ended(self, epoch: int) -> None:
        """Every run being trained right now has reported ``epoch``: where a pruner judges.

        Called once per epoch of a solo run, and once per epoch of a pack (after all its
        replicas' :meth:`run_epoch`). The trainer reads :attr:`stopping` right after it.
        """
        ...

    def run_trained(self, seed: int, epoch: int, model: Any) -> None:
        """``seed``'s run trained its last epoch without failing, and ``model`` (a
        ``keras.Model``) holds the weights it ends with: those of ``epoch``, the last epoch or
        the one early stopping restored. Called once, after the last :meth:`run_epoch` and
        before :meth:`run_finished`; not for a failed run nor for runs a pruned trial stops.
        A packed replica's model may change once the call returns: copy what you keep.
        """
        ...

    def run_finished(self, seed: int, error: str | None) -> None:
        """``seed``'s run ended: ``error`` None for a completed (or stopped) run, else the
        failure as ``"Type: message"`` (see :func:`describe`). Called once per started run,
        after its last :meth:`run_epoch`; no more calls for ``seed`` follow.
        """
        ...


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite: the run fails after that epoch is reported."""


def describe(error: BaseException) -> str:
    """A run's failure as it is recorded and passed to :meth:`RunSink.run_finished`.

    Example:
        >>> describe(TypeError("the builder returned str, not a keras.Model"))
        'TypeError: the builder returned str, not a keras.Model'
    """
    return f"{type(error).__name__}: {error}"
