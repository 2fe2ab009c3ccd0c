"""The assignment's CIFAR-10 CNN and the improvements it tries, as sweepable keywords."""

from __future__ import annotations

from collections.abc import Sequence

from hpo._imports import LazyImport

keras = LazyImport("keras")


def build(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    stack: str = "base",
    batch_norm: bool = False,
    dense: Sequence[int] = (64,),
    dropout: float = 0.0,
    output_activation: str = "softmax",
) -> keras.Model:
    """Conv2D stack → Flatten → Dense layers → Dense(n_classes).

    ``stack = "base"``: Conv2D(32,3,relu) MaxPool(2) Conv2D(64,3,relu) MaxPool(2) Conv2D(64,3,relu).
    ``stack = "deep"``: Conv2D(32,3,relu) MaxPool(2), then Conv2D(64|128|128, 3, relu,
    padding="same") each followed by MaxPool(2). ``batch_norm`` adds BatchNormalization after each
    convolution; ``dropout`` adds Dropout after Flatten and after each dense layer.

    Example:
        >>> build((32, 32, 3), 10).count_params()  # the assignment's CNN
        122570
    """
    if stack not in ("base", "deep"):
        raise ValueError(f"stack = {stack!r}: expected 'base' or 'deep'")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout = {dropout!r}: expected 0 <= dropout < 1")
    if stack == "base":
        convs = [(32, "valid", True), (64, "valid", True), (64, "valid", False)]
    else:
        convs = [(32, "valid", True), (64, "same", True), (128, "same", True), (128, "same", True)]
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for filters, padding, pool in convs:
        x = keras.layers.Conv2D(filters, 3, activation="relu", padding=padding)(x)
        if batch_norm:
            x = keras.layers.BatchNormalization()(x)
        if pool:
            x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    for units in dense:
        x = keras.layers.Dense(int(units), activation="relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation=output_activation)(x)
    return keras.Model(inputs, outputs, name="cnn")
