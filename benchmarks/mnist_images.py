"""MNIST with a channel axis, (N, 28, 28, 1), so that the CNN builder runs on it (benchmarks)."""

from hpo.datasets.mnist import load as load_mnist


def load():
    (x_train, y_train), (x_test, y_test) = load_mnist()
    return (x_train[..., None], y_train), (x_test[..., None], y_test)
