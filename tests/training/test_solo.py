"""The solo trainer: seeded runs are reproducible and distinct."""

from __future__ import annotations

import pytest

from hpo.models import builders
from hpo.runner import load_data
from hpo.sweep import parse_sweep
from hpo.training.job import TrainingJob
from hpo.training.solo import train_run

from conftest import SMALL_SWEEP, CollectSink


@pytest.fixture(scope="module")
def job():
    sweep = parse_sweep(SMALL_SWEEP, ["train.epochs=3"])
    return TrainingJob(builders.resolve("mlp"), {"width": 8}, sweep.train, load_data(sweep))


def test_same_seed_same_history_other_seed_other_history(job):
    first, again, other = (train_run(job, seed, CollectSink()) for seed in (5, 5, 6))
    assert first == again
    assert first["loss"] != other["loss"]
    assert len(first["val_accuracy"]) == 3


def test_each_epoch_is_reported_in_order(job):
    sink = CollectSink()
    history = train_run(job, 1, sink)
    assert [e for _, e, _ in sink.epochs] == [1, 2, 3]
    assert [logs["loss"] for _, _, logs in sink.epochs] == history["loss"]


def test_a_builder_that_returns_no_model_fails_the_run(job):
    bad = TrainingJob(lambda *a, **k: "not a model", {}, job.spec, job.data)
    with pytest.raises(TypeError, match="not a keras.Model"):
        train_run(bad, 0, CollectSink())
