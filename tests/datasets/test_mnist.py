import numpy as np
import pytest

from hpo.config import DataSpec
from hpo.datasets.mnist import load
from hpo.datasets.prepare import encode_targets, prepare
from hpo.errors import SweepError


def test_mnist_from_the_data_dir():
    (x_train, y_train), (x_test, y_test) = load()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() == 1.0
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_prepare_limits_and_validation_choices():
    arrays = load()
    d = prepare(arrays, DataSpec("mnist", limit_train=500, limit_test=100))
    assert (len(d.x_train), len(d.x_val), len(d.x_test), d.n_classes) == (500, 100, 100, 10)
    assert d.x_val is d.x_test and d.input_shape == (28, 28)
    assert np.array_equal(d.x_test, arrays[1][0][:100])
    split = prepare(arrays, DataSpec("mnist", validation=0.2, limit_train=500))
    assert (len(split.x_train), len(split.x_val)) == (400, 100)
    assert np.array_equal(split.x_val, arrays[0][0][400:500])  # the last 20 %, as Keras does


def test_targets_one_hot_for_mse():
    y = np.array([0, 2])
    assert encode_targets(y, 3, sparse=True) is y
    assert encode_targets(y, 3, sparse=False).tolist() == [[1, 0, 0], [0, 0, 1]]


def test_bad_labels_are_refused():
    x = np.zeros((4, 2), "float32")
    with pytest.raises(SweepError, match="labels must be integer classes"):
        prepare(((x, np.array([0.5, 1, 2, 3])), (x, np.arange(4))), DataSpec("mine"))


def test_n_classes_come_from_the_whole_label_set_not_the_limited_slices():
    arrays = load()
    # MNIST's first 4 training and first 7 test labels hold no 9 (5 0 4 1; 7 2 1 0 4 1 4).
    d = prepare(arrays, DataSpec("mnist", limit_train=4, limit_test=7))
    assert 9 not in d.y_train and 9 not in d.y_test
    assert d.n_classes == 10
    assert encode_targets(d.y_train, d.n_classes, sparse=False).shape == (4, 10)


def test_n_classes_of_a_slice_missing_the_top_classes():
    x = np.zeros((40, 2), "float32")
    y = np.arange(40) % 10  # the first 20 training examples: all classes; 5 test: 0..4
    slice_without_9 = (x, np.concatenate([np.arange(20) % 9, [9] * 20]))
    d = prepare((slice_without_9, (x, y)), DataSpec("mine", limit_train=20, limit_test=5))
    assert d.y_train.max() == 8 and d.y_test.max() == 4
    assert d.n_classes == 10
