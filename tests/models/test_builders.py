"""Every registered builder builds, counts its parameters right, and trains a step."""

from __future__ import annotations

import numpy as np
import pytest

from hpo.models import builders


def count(name, input_shape, n_classes, **params):
    return builders.resolve(name)(input_shape, n_classes, **params).count_params()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 784 * 32 + 32 + 32 * 10 + 10),
        ({"layers": 0}, 784 * 10 + 10),
        ({"hidden": [128, 128]}, 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10),
        ({"layers": 2, "width_1": 8, "width_2": 64}, 784 * 8 + 8 + 8 * 64 + 64 + 64 * 10 + 10),
        ({"width": 256, "dropout": 0.2}, 784 * 256 + 256 + 256 * 10 + 10),
    ],
)
def test_mlp_shapes(params, expected):
    assert count("mlp", (28, 28), 10, **params) == expected


def test_mlp_refuses_ambiguous_or_unknown_keys():
    build = builders.resolve("mlp")
    with pytest.raises(ValueError, match="either hidden"):
        build((4,), 2, hidden=[3], width=5)
    with pytest.raises(TypeError, match="unexpected keyword 'width_3'"):
        build((4,), 2, layers=2, width_3=8)


@pytest.mark.parametrize("value", [8.5, 8.0, True, "8"])
def test_mlp_one_layers_width_is_an_integer(value):
    # width_N is a **keyword: no annotation says so for the sweep check, the builder does.
    with pytest.raises(ValueError, match=f"width_2 = {value!r}: expected an integer"):
        builders.resolve("mlp")((4,), 2, layers=2, width_2=value)
    widths = count("mlp", (4,), 2, layers=2, width_2=np.int64(3))  # numpy's integers are fine
    assert widths == 4 * 32 + 32 + 32 * 3 + 3 + 3 * 2 + 2


def test_transformer_parameter_counts_equal_the_keras_io_summary():
    # head_size 256, 4 heads, ff_dim 4, 4 blocks, mlp [128], 2 classes on FordA's (500, 1).
    assert count("transformer", (500, 1), 2) == 93130
    assert count("transformer", (500, 1), 2, pooling="channels_last") == 29258
    # Pre- and post-norm blocks hold the same layers, in another order.
    assert count("transformer", (500, 1), 2, norm="pre") == 93130


def test_transformer_norm_placement():
    import keras

    post = builders.resolve("transformer")((20, 1), 2, num_blocks=1, head_size=4, norm="post")
    pre = builders.resolve("transformer")((20, 1), 2, num_blocks=1, head_size=4, norm="pre")
    kinds = [type(layer).__name__ for layer in post.layers]
    assert kinds.index("MultiHeadAttention") < kinds.index("LayerNormalization")
    kinds = [type(layer).__name__ for layer in pre.layers]
    assert kinds.index("LayerNormalization") < kinds.index("MultiHeadAttention")
    assert isinstance(post, keras.Model)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 122570),  # the assignment's CNN
        ({"stack": "deep", "dense": [128, 128]}, None),
        ({"stack": "deep", "dense": [128, 128], "batch_norm": True, "dropout": 0.2}, None),
    ],
)
def test_cnn_variants_build_and_train_a_step(params, expected):
    model = builders.resolve("cnn")((32, 32, 3), 10, **params)
    if expected is not None:
        assert model.count_params() == expected
    kinds = {type(layer).__name__ for layer in model.layers}
    assert ("BatchNormalization" in kinds) == params.get("batch_norm", False)
    assert ("Dropout" in kinds) == bool(params.get("dropout"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 32, 32, 3), dtype="float32")
    loss = model.train_on_batch(x, np.arange(8) % 10)
    assert np.isfinite(loss)


def test_deep_stack_shapes():
    model = builders.resolve("cnn")((32, 32, 3), 10, stack="deep")
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128, 128]
    assert [c.padding for c in convs] == ["valid", "same", "same", "same"]
