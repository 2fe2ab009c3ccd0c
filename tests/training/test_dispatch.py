"""Which trials share a pack (dispatch._packs): those with the same training settings and data,
taken by the fast path alike, with a working builder, within the pack's budget."""

from __future__ import annotations

from hpo.models import builders
from hpo.runner import load_data
from hpo.sweep import parse_sweep
from hpo.training.dispatch import _packs
from hpo.training.job import TrainingJob

from conftest import SMALL_SWEEP, CollectSink


def convolutional(input_shape, n_classes):
    """A small model with a convolution: no fast path takes it."""
    import keras

    inputs = keras.Input(input_shape)
    hidden = keras.layers.Flatten()(keras.layers.Conv1D(2, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(n_classes, activation="softmax")(hidden))


def broken(input_shape, n_classes):
    raise ValueError("no model at this point of the space")


def test_which_trials_share_a_pack(mnist_data):
    sweep = parse_sweep(SMALL_SWEEP)
    data = load_data(sweep)
    other_spec = parse_sweep(SMALL_SWEEP, ["train.learning_rate=0.05"]).train
    mlp = builders.resolve("mlp")

    def trial(build=mlp, spec=sweep.train, seeds=(0, 1, 2), **params):
        return TrainingJob(build, params, spec, data), list(seeds), CollectSink()

    trials = [trial(width=4), trial(width=64), trial(width=4, spec=other_spec),
              trial(convolutional), trial(width=8), trial(broken), trial(width=16)]
    # Other settings, a model the fast path refuses (its replicas would otherwise pull the
    # others off it) and a failing builder (its error would fail the others' runs) start or
    # stand alone.
    assert _packs(trials, True) == [[0, 1], [2], [3], [4], [5], [6]]
    three = [trial(width=w) for w in (4, 8, 16)]
    assert _packs(three, 6) == [[0, 1], [2]]  # at most 6 replicas in a pack
    assert _packs(three, 2) == [[0], [1], [2]]  # a trial's 3 seeds need packs of their own
