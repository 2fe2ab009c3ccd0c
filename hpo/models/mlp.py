"""The dense network of the course assignment: Flatten → hidden Dense layers → output Dense."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from hpo._imports import LazyImport

keras = LazyImport("keras")


def build(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    hidden: Sequence[int] | None = None,
    width: int | None = None,
    layers: int | None = None,
    activation: str = "relu",
    dropout: float = 0.0,
    output_activation: str = "softmax",
    **layer_widths: int,
) -> keras.Model:
    """Flatten, hidden Dense layers, optional Dropout after each, then Dense(n_classes).

    The hidden layers are ``hidden`` (a list of widths) or ``layers`` × ``width`` (defaults 1 × 32);
    ``layers = 0`` means no hidden layer. ``width_1``, ``width_2``, … set single layers' widths,
    so that a sweep can search each layer's width (e.g. two layers of {8, 32, 64, 128} each).

    Example:
        >>> build((28, 28), 10, width=32).count_params()
        25450
    """
    if hidden is not None and (width is not None or layers is not None):
        raise ValueError("give either hidden = [...] or width/layers, not both")
    if hidden is None:
        hidden = [32 if width is None else int(width)] * (1 if layers is None else int(layers))
    hidden = list(hidden)
    for key, value in layer_widths.items():
        index = key.removeprefix("width_")
        if not (key.startswith("width_") and index.isdigit() and 1 <= int(index) <= len(hidden)):
            raise TypeError(
                f"unexpected keyword {key!r}; expected width_1..width_{len(hidden)} or hidden, "
                "width, layers, activation, dropout, output_activation"
            )
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ValueError(f"{key} = {value!r}: expected an integer (one layer's width)")
        hidden[int(index) - 1] = value
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout = {dropout!r}: expected 0 <= dropout < 1")
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    for units in hidden:
        x = keras.layers.Dense(int(units), activation=activation)(x)
        if dropout:
            x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation=output_activation)(x)
    return keras.Model(inputs, outputs, name="mlp")
