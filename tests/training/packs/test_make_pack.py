"""Which pack trains a trial's replicas: the backend's fast path where it applies, else the
functional pack; and the fall back when XLA refuses a model the fast path took."""

from __future__ import annotations

import numpy as np
import pytest

from hpo.models import builders
from hpo.runner import load_data
from hpo.sweep import parse_sweep
from hpo.training.job import TrainingJob
from hpo.training.packed import train_packed
from hpo.training.packs import jax as jax_path
from hpo.training.packs import make_pack
from hpo.training.packs import tf as tf_path
from hpo.training.solo import train_solo

from conftest import SMALL_SWEEP, CollectSink


def make_job(*overrides, params=None):
    sweep = parse_sweep(SMALL_SWEEP, list(overrides))
    return TrainingJob(builders.resolve("mlp"), {"width": 16, **(params or {})}, sweep.train,
                       load_data(sweep))


CHOSEN = {"tensorflow": "TfPack", "jax": "JaxPack"}


@pytest.mark.parametrize("params", [{}, {"dropout": 0.3}])
def test_the_backend_chooses_the_pack(params):
    import keras

    job = make_job(params=params)
    pack = make_pack([job, job], [0, 1], [job.data.split(s) for s in (0, 1)])
    try:
        assert type(pack).__name__ == CHOSEN[keras.backend.backend()]
    finally:
        pack.close()
    slow = make_pack([job, job], [0, 1], [job.data.split(s) for s in (0, 1)], fast=False)
    slow.close()
    assert type(slow).__name__ == "FunctionalPack"


def test_jobs_packed_together_must_share_their_training_settings():
    job, other = make_job(), make_job("train.learning_rate=0.01")
    with pytest.raises(ValueError, match="share their training settings"):
        make_pack([job, other], [0, 0], [job.data.split(0)] * 2)


def test_where_the_fast_paths_apply():
    mlp, cnn = builders.resolve("mlp"), builders.resolve("cnn")
    same = [mlp((8,), 3, width=4), mlp((8,), 3, width=4)]
    mixed = [mlp((8,), 3, width=4), mlp((8,), 3, width=5)]
    convolutions = [cnn((28, 28, 1), 10), cnn((28, 28, 1), 10)]
    dropout = [mlp((8,), 3, width=4, dropout=0.5)]
    assert jax_path.applies(same) and tf_path.applies(same)
    assert not tf_path.applies([pooled((8, 2), 3)])  # XLA lacks a deterministic max-pool gradient
    assert tf_path.applies(mixed) and jax_path.applies(mixed)  # JAX: a stack per architecture
    assert not jax_path.applies(convolutions) and not tf_path.applies(convolutions)
    assert jax_path.applies(dropout) and tf_path.applies(dropout)


def pooled(input_shape, n_classes):
    import keras

    inputs = keras.Input(input_shape)
    hidden = keras.layers.MaxPooling1D(2)(keras.layers.Dense(4)(inputs))
    return keras.Model(inputs, keras.layers.Dense(n_classes)(keras.layers.Flatten()(hidden)))


def test_an_op_xla_cannot_compile_falls_back_to_the_functional_pack():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's fast path")
    import tensorflow

    class PythonIdentity(keras.layers.Layer):  # tf.py_function: XLA cannot compile it
        def call(self, x):
            y = tensorflow.py_function(lambda a: a, [x], x.dtype)
            y.set_shape(x.shape)
            return y

    def builder(input_shape, n_classes):
        inputs = keras.Input(input_shape)
        hidden = PythonIdentity()(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(hidden))

    job = make_job("train.epochs=2")
    job = TrainingJob(builder, {}, job.spec, job.data)
    pack = make_pack([job, job], [0, 1], [job.data.split(s) for s in (0, 1)])
    pack.close()
    assert type(pack).__name__ == "TfPack"  # chosen, then refused by XLA at the first epoch
    sink = CollectSink()
    packed = train_packed(job, [0, 1], sink)
    solo = train_solo(job, [0, 1], CollectSink(), fast=False)
    assert not sink.errors
    for seed in (0, 1):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)


def test_replicas_that_differ_in_structure_pack_like_their_solo_runs():
    import keras

    def uneven(input_shape, n_classes):  # width drawn from the seeded numpy state
        return builders.resolve("mlp")(input_shape, n_classes, width=int(np.random.randint(4, 64)))

    job = make_job("train.epochs=1")
    job = TrainingJob(uneven, {}, job.spec, job.data)
    pack = make_pack([job] * 3, [0, 1, 2], [job.data.split(s) for s in (0, 1, 2)])
    pack.close()
    # TensorFlow's fast path steps each replica on its own; JAX's stacks each architecture.
    assert type(pack).__name__ == CHOSEN[keras.backend.backend()]
    packed = train_packed(job, [0, 1, 2], CollectSink())
    solo = train_solo(job, [0, 1, 2], CollectSink(), fast=False)
    for seed in (0, 1, 2):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)
