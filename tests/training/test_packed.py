"""Packed replicas are the solo runs with the same seeds: weights, data order, metrics.

Tolerance: on one machine and backend, a replica computes the same operations on the same numbers
as its solo run (the same gathered batch, element-wise optimizer updates), so the histories agree
to float32 rounding; we assert 1e-5 relative on losses and 1e-6 on accuracies over a few epochs.
Measured: the fast paths' XLA kernels round differently from the solo runs' in the last bit now
and then (TensorFlow: a loss of 1.8681903 came out 1.8681905 after one epoch; JAX: an accuracy of
43/100 came out 0.42999998 instead of 0.43000001); the functional pack runs the solo kernels.
tests/training/test_backends.py runs this module again with KERAS_BACKEND=jax.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpo.models import builders
from hpo.runner import load_data
from hpo.stats import epoch_order, summarize
from hpo.sweep import parse_sweep
from hpo.training.dispatch import train
from hpo.training.packed import (
    build_replicas,
    epoch_rows,
    make_pack,
    pack_size,
    train_packed,
)
from hpo.training.solo import TrainingJob, seed_everything, train_seeds

from conftest import SMALL_SWEEP, CollectSink, write_cifar10


def make_job(*overrides, params=None):
    sweep = parse_sweep(SMALL_SWEEP, list(overrides))
    return TrainingJob(builders.resolve("mlp"), {"width": 16, **(params or {})}, sweep.train,
                       load_data(sweep))


def test_replicas_start_from_the_solo_weights():
    job = make_job()
    replicas = build_replicas(job, [3, 7])
    for seed, replica in zip([3, 7], replicas, strict=True):
        seed_everything(seed)
        solo = job.build(job.data.input_shape, job.data.n_classes, **job.model_params)
        for packed_w, solo_w in zip(replica.get_weights(), solo.get_weights(), strict=True):
            assert np.array_equal(packed_w, solo_w)


def test_each_replica_gets_its_seeds_data_order():
    job = make_job()
    splits = [job.data.split(s) for s in (0, 1)]
    rows = epoch_rows([0, 1], splits, epoch=2)
    assert np.array_equal(rows[:, 0], splits[0].train[epoch_order(0, 2, 300)])
    assert np.array_equal(rows[:, 1], splits[1].train[epoch_order(1, 2, 300)])
    assert not np.array_equal(rows[:, 0], rows[:, 1])


def test_first_step_losses_equal_the_solo_runs():
    job = make_job("data.limit_train=32", "train.epochs=1")  # one step of batch 32
    solo = train_seeds(job, [0, 1, 2], CollectSink())
    packed = train_packed(job, [0, 1, 2], CollectSink())
    for seed in (0, 1, 2):
        assert packed[seed]["loss"][0] == pytest.approx(solo[seed]["loss"][0], rel=1e-6)


@pytest.mark.parametrize("dropout", [0.0, 0.3], ids=["plain", "dropout"])
def test_histories_agree_after_several_epochs(dropout):
    job = make_job("train.epochs=3", params={"dropout": dropout})
    solo = train_seeds(job, [0, 1, 2], CollectSink())
    packed = train_packed(job, [0, 1, 2], CollectSink())
    for seed in (0, 1, 2):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)
        # Accuracies move in steps of 1/100 here: 1e-6 still catches one flipped prediction.
        assert packed[seed]["val_accuracy"] == pytest.approx(solo[seed]["val_accuracy"], rel=1e-6)
        assert set(packed[seed]) == set(solo[seed])


def test_ten_seeds_packed_and_solo_agree_within_their_cis():
    job = make_job("train.epochs=1", "data.limit_train=200")
    seeds = list(range(10))
    solo = train(job, seeds, CollectSink(), pack=False)
    packed = train(job, seeds, CollectSink(), pack=True)
    a = summarize([solo[s]["val_accuracy"][-1] for s in seeds])
    b = summarize([packed[s]["val_accuracy"][-1] for s in seeds])
    assert a.ci95_low <= b.mean <= a.ci95_high and b.ci95_low <= a.mean <= b.ci95_high
    # Paired by seed they are the same experiment.
    diffs = [packed[s]["val_accuracy"][-1] - solo[s]["val_accuracy"][-1] for s in seeds]
    assert max(map(abs, diffs)) < 1e-6


def test_per_replica_early_stopping_matches_solo():
    # High learning rate on a small set: the seeds stop at different epochs.
    job = make_job("train.epochs=8", "train.learning_rate=0.05", "train.evaluate_test=true",
                   "train.early_stopping={monitor='val_loss', patience=1, "
                   "restore_best_weights=true}")
    seeds = [0, 1, 2, 3]
    solo = train_seeds(job, seeds, CollectSink())
    packed = train_packed(job, seeds, CollectSink())
    lengths = {s: len(solo[s]["loss"]) for s in seeds}
    assert {s: len(packed[s]["loss"]) for s in seeds} == lengths
    assert len(set(lengths.values())) > 1, "the seeds should stop at different epochs"
    for s in seeds:
        assert packed[s]["test_accuracy"] == pytest.approx(solo[s]["test_accuracy"], rel=1e-6)
        assert packed[s]["test_loss"] == pytest.approx(solo[s]["test_loss"], rel=1e-5)


@pytest.mark.parametrize("builder, dataset, params", [
    ("cnn", "cifar10", {"batch_norm": True, "dropout": 0.3}),
    ("transformer", "forda", {"head_size": 4, "num_heads": 2, "num_blocks": 1, "ff_dim": 4,
                              "mlp_units": [8], "norm": "pre"}),
])
def test_the_shipped_builders_pack_like_their_solo_runs(tmp_path, monkeypatch, builder, dataset,
                                                        params):
    # Batch normalization's moving statistics and the dropout of attention and dense layers are
    # per-replica state too. Learning rate 0.001: at 0.01 batch normalization over 32 random
    # images amplifies JAX's last-bit rounding differences to 1 % within four steps.
    if dataset == "cifar10":
        write_cifar10(tmp_path, n_train=64, n_test=32)
        monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    sweep = parse_sweep(SMALL_SWEEP, [f"data.dataset='{dataset}'", "data.limit_train=64",
                                      "data.limit_test=32", "train.epochs=2",
                                      "train.learning_rate=0.001"])
    job = TrainingJob(builders.resolve(builder), params, sweep.train, load_data(sweep))
    solo = train_seeds(job, [0, 1], CollectSink())
    packed = train_packed(job, [0, 1], CollectSink())
    for seed in (0, 1):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)
        assert packed[seed]["val_loss"] == pytest.approx(solo[seed]["val_loss"], rel=1e-5)


FAST_PATHS = {"tensorflow": "TfPack", "jax": "JaxPack"}


@pytest.mark.parametrize("params, fast", [({}, True), ({"dropout": 0.3}, None)])
def test_the_backend_chooses_the_pack(params, fast):
    import keras

    backend = keras.backend.backend()
    if fast is None:  # dropout: JAX's fast path keeps XLA's random numbers on both sides
        fast = backend == "jax"
    job = make_job(params=params)
    pack = make_pack(job, [0, 1], [job.data.split(s) for s in (0, 1)])
    try:
        assert type(pack).__name__ == (FAST_PATHS[backend] if fast else "FunctionalPack")
    finally:
        pack.close()


def test_where_the_fast_paths_apply():
    from hpo.training import jax_pack, tf_pack

    mlp, cnn = builders.resolve("mlp"), builders.resolve("cnn")
    same = [mlp((8,), 3, width=4), mlp((8,), 3, width=4)]
    mixed = [mlp((8,), 3, width=4), mlp((8,), 3, width=5)]
    convolutions = [cnn((28, 28, 1), 10), cnn((28, 28, 1), 10)]
    dropout = [mlp((8,), 3, width=4, dropout=0.5)]
    assert jax_pack.applies(same) and tf_pack.applies(same)
    assert not tf_pack.applies([pooled((8, 2), 3)])  # XLA lacks a deterministic max-pool gradient
    assert tf_pack.applies(mixed) and not jax_pack.applies(mixed)  # TF: a step per replica
    assert not jax_pack.applies(convolutions) and not tf_pack.applies(convolutions)
    assert jax_pack.applies(dropout) and not tf_pack.applies(dropout)


def pooled(input_shape, n_classes):
    import keras

    inputs = keras.Input(input_shape)
    hidden = keras.layers.MaxPooling1D(2)(keras.layers.Dense(4)(inputs))
    return keras.Model(inputs, keras.layers.Dense(n_classes)(keras.layers.Flatten()(hidden)))


def test_an_op_xla_cannot_compile_falls_back_to_the_functional_pack():
    import keras

    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's fast path")
    import tensorflow as tf

    class PythonIdentity(keras.layers.Layer):  # tf.py_function: XLA cannot compile it
        def call(self, x):
            y = tf.py_function(lambda a: a, [x], x.dtype)
            y.set_shape(x.shape)
            return y

    def builder(input_shape, n_classes):
        inputs = keras.Input(input_shape)
        hidden = PythonIdentity()(keras.layers.Flatten()(inputs))
        return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(hidden))

    job = make_job("train.epochs=2")
    job = TrainingJob(builder, {}, job.train, job.data)
    pack = make_pack(job, [0, 1], [job.data.split(s) for s in (0, 1)])
    pack.close()
    assert type(pack).__name__ == "TfPack"  # chosen, then refused by XLA at the first epoch
    sink = CollectSink()
    packed = train_packed(job, [0, 1], sink)
    solo = train_seeds(job, [0, 1], CollectSink())
    assert not sink.errors
    for seed in (0, 1):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)


def test_replicas_that_differ_in_structure_pack_like_their_solo_runs():
    import keras

    def uneven(input_shape, n_classes):  # width drawn from the seeded numpy state
        return builders.resolve("mlp")(input_shape, n_classes, width=int(np.random.randint(4, 64)))

    job = make_job("train.epochs=1")
    job = TrainingJob(uneven, {}, job.train, job.data)
    pack = make_pack(job, [0, 1, 2], [job.data.split(s) for s in (0, 1, 2)])
    pack.close()
    # TensorFlow's fast path steps each replica on its own; JAX's needs one stacked shape.
    expected = {"tensorflow": "TfPack"}.get(keras.backend.backend(), "FunctionalPack")
    assert type(pack).__name__ == expected
    packed = train_packed(job, [0, 1, 2], CollectSink())
    solo = train_seeds(job, [0, 1, 2], CollectSink())
    for seed in (0, 1, 2):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)


def test_a_broken_builder_fails_every_replica_with_its_reason():
    job = make_job()
    bad = TrainingJob(lambda *a, **k: "not a model", {}, job.train, job.data)
    sink = CollectSink()
    assert train_packed(bad, [0, 1], sink) == {}
    assert all("not a keras.Model" in e for e in sink.errors.values()) and len(sink.errors) == 2


def test_pack_size():
    assert pack_size(True, 10, 1_000) == 10
    assert pack_size(True, 10, 50_000_000) == 2  # 800 MB per replica: two fit in 2 GiB
    assert pack_size(3, 10, 1_000) == 3 and pack_size(False, 10, 1_000) == 1
