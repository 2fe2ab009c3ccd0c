"""Which replicas the JAX fast path stacks: one architecture, not merely one set of shapes.

``packs.jax.architecture`` and ``stacked_groups`` take Keras models and names, so this runs on
any backend (TensorFlow in CI): the stacked path itself needs JAX, the decision does not.
"""

from __future__ import annotations

import pytest

from hpo.models import builders
from hpo.training.packs.jax import architecture, stacked_groups


def applies(models) -> bool:
    """True when the JAX fast path stacks all of ``models`` in one group (on one core)."""
    return len(stacked_groups([architecture(m) for m in models], [1] * len(models), 1)) == 1


def mlp(**params):
    return builders.resolve("mlp")((8,), 3, width=4, **params)


def test_replicas_of_one_architecture_are_stacked_whatever_their_layer_names():
    first, second = mlp(dropout=0.2), mlp(dropout=0.2)
    assert first.layers[2].name != second.layers[2].name  # each replica names its own layers
    assert applies([first, second])


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ({"activation": "relu"}, {"activation": "tanh"}),
        ({"dropout": 0.2}, {"dropout": 0.5}),
        ({"output_activation": "softmax"}, {"output_activation": "linear"}),
    ],
)
def test_same_shapes_other_configuration_is_not_stacked(one, other):
    # The stacked path runs replica 0's train_step for all: these would train as replica 0.
    a, b = mlp(**one), mlp(**other)
    assert [v.shape for v in a.variables] == [v.shape for v in b.variables]
    assert not applies([a, b])
    assert not applies([b, a, b])


def test_nested_models_compare_their_inner_layers():
    import keras

    def nested(activation):
        inner = keras.Sequential([keras.layers.Dense(4, activation=activation),
                                  keras.layers.Dense(4)])
        inputs = keras.Input((8,))
        return keras.Model(inputs, keras.layers.Dense(3)(inner(inputs)))

    assert applies([nested("relu"), nested("relu")])
    assert not applies([nested("relu"), nested("tanh")])


def test_other_shapes_are_not_stacked():
    assert not applies([mlp(), builders.resolve("mlp")((8,), 3, width=5)])
