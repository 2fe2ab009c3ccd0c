"""The epoch rules on hand-written logs: what is recorded, reported and evaluated, and when."""

from __future__ import annotations

import math

import pytest

from hpo.config import TrainSpec
from hpo.training.epochs import RunEpochs, end_epoch

from conftest import CollectSink

STOP_AFTER_ONE_WORSE = {"monitor": "val_loss", "patience": 1, "restore_best_weights": True}


def tiny_model():
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False  # as after fit, or as build_replicas leaves a replica
    return model


def logs(loss: float, val_loss: float = 1.0) -> dict[str, float]:
    return {"loss": loss, "val_loss": val_loss}


def no_test():
    raise AssertionError("nothing should wait for the test split")


def test_every_epoch_is_recorded_and_reported_until_the_last():
    sink = CollectSink()
    run = RunEpochs(7, tiny_model(), TrainSpec(epochs=2), sink)
    end_epoch([run], 1, [logs(0.5)], no_test)
    assert not run.done
    end_epoch([run], 2, [logs(0.4)], no_test)
    assert run.done and run.failure is None
    assert run.history == {"loss": [0.5, 0.4], "val_loss": [1.0, 1.0]}
    assert [(seed, epoch) for seed, epoch, _ in sink.epochs] == [(7, 1), (7, 2)]


def test_a_nan_loss_is_reported_and_then_fails_the_run():
    sink = CollectSink()
    run = RunEpochs(3, tiny_model(), TrainSpec(epochs=5), sink)
    end_epoch([run], 1, [logs(0.5)], no_test)
    end_epoch([run], 2, [logs(math.nan)], no_test)
    assert run.done
    assert str(run.failure) == "loss became nan in epoch 2"
    assert [epoch for _, epoch, _ in sink.epochs] == [1, 2]
    assert math.isnan(sink.epochs[-1][2]["loss"])


def test_early_stopping_ends_the_run_and_restores_the_best_weights():
    model = tiny_model()
    spec = TrainSpec(epochs=10, early_stopping=STOP_AFTER_ONE_WORSE)
    run = RunEpochs(0, model, spec, CollectSink())
    best = model.get_weights()
    end_epoch([run], 1, [logs(0.5, val_loss=0.3)], no_test)
    model.set_weights([w + 1 for w in best])  # the next epoch's (worse) weights
    end_epoch([run], 2, [logs(0.4, val_loss=0.9)], no_test)
    assert run.done and run.history["val_loss"] == [0.3, 0.9]
    assert all((got == kept).all() for got, kept in zip(model.get_weights(), best, strict=True))


def test_the_test_split_is_evaluated_once_for_the_runs_that_end_and_joins_their_last_epoch():
    sink = CollectSink()
    spec = TrainSpec(epochs=3, evaluate_test=True, early_stopping=STOP_AFTER_ONE_WORSE)
    runs = [RunEpochs(seed, tiny_model(), spec, sink) for seed in (0, 1)]
    calls = []

    def evaluate():
        calls.append(True)
        return [{"loss": 0.7}, {"loss": 0.8}]

    end_epoch(runs, 1, [logs(0.5, 0.3), logs(0.5, 0.3)], evaluate)
    end_epoch(runs, 2, [logs(0.4, 0.9), logs(0.4, 0.2)], evaluate)  # seed 0 stops here
    assert len(calls) == 1 and runs[0].done and not runs[1].done
    assert runs[0].history["test_loss"] == [0.7]
    assert sink.epochs[-1] == (0, 2, {"loss": 0.4, "val_loss": 0.9, "test_loss": 0.7})
    end_epoch(runs, 3, [logs(0.3, 0.1), logs(0.3, 0.1)], evaluate)  # only seed 1 is trained on
    assert len(calls) == 2 and runs[1].history["test_loss"] == [0.8]
    assert len(runs[0].history["loss"]) == 2


def test_an_epoch_after_the_last_is_a_bug():
    run = RunEpochs(0, tiny_model(), TrainSpec(epochs=1), CollectSink())
    run.end_epoch(1, logs(0.5))
    with pytest.raises(RuntimeError, match="after the run's last"):
        run.end_epoch(2, logs(0.5))
