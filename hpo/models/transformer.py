"""The keras-io "Timeseries classification with a Transformer model" encoder classifier."""

from __future__ import annotations

from collections.abc import Sequence

from hpo._imports import LazyImport

keras = LazyImport("keras")


def encoder_block(x, head_size: int, num_heads: int, ff_dim: int, dropout: float, norm: str):
    """One encoder block: attention and a Conv1D feed-forward part, each with a residual.

    ``norm = "post"`` (the example's 2021/08 text) normalizes after attention and after the
    feed-forward part; ``"pre"`` (its 2021/06 text) normalizes their inputs instead.
    """
    n_features = x.shape[-1]
    attn_in = keras.layers.LayerNormalization(epsilon=1e-6)(x) if norm == "pre" else x
    h = keras.layers.MultiHeadAttention(key_dim=head_size, num_heads=num_heads,
                                        dropout=dropout)(attn_in, attn_in)
    h = keras.layers.Dropout(dropout)(h)
    if norm == "post":
        h = keras.layers.LayerNormalization(epsilon=1e-6)(h)
    res = keras.layers.Add()([h, x])
    ff_in = keras.layers.LayerNormalization(epsilon=1e-6)(res) if norm == "pre" else res
    h = keras.layers.Conv1D(filters=ff_dim, kernel_size=1, activation="relu")(ff_in)
    h = keras.layers.Dropout(dropout)(h)
    h = keras.layers.Conv1D(filters=n_features, kernel_size=1)(h)
    if norm == "post":
        h = keras.layers.LayerNormalization(epsilon=1e-6)(h)
    return keras.layers.Add()([h, res])


def build(
    input_shape: tuple[int, ...],
    n_classes: int,
    *,
    head_size: int = 256,
    num_heads: int = 4,
    ff_dim: int = 4,
    num_blocks: int = 4,
    mlp_units: Sequence[int] = (128,),
    dropout: float = 0.25,
    mlp_dropout: float = 0.4,
    norm: str = "post",
    pooling: str = "channels_first",
) -> keras.Model:
    """``num_blocks`` encoder blocks → GlobalAveragePooling1D → Dense(relu)+Dropout → softmax.

    ``pooling = "channels_first"`` (the example's published runs) averages over the feature axis,
    leaving one value per time step; ``"channels_last"`` (its latest text) averages over time.

    Example:
        >>> build((500, 1), 2).count_params()  # the example's Keras summary
        93130
        >>> build((500, 1), 2, pooling="channels_last", norm="pre").count_params()
        29258
    """
    if norm not in ("post", "pre"):
        raise ValueError(f"norm = {norm!r}: expected 'post' or 'pre'")
    if pooling not in ("channels_first", "channels_last"):
        raise ValueError(f"pooling = {pooling!r}: expected 'channels_first' or 'channels_last'")
    inputs = keras.Input(shape=tuple(input_shape))
    x = inputs
    for _ in range(int(num_blocks)):
        x = encoder_block(x, int(head_size), int(num_heads), int(ff_dim), dropout, norm)
    x = keras.layers.GlobalAveragePooling1D(data_format=pooling)(x)
    for units in mlp_units:
        x = keras.layers.Dense(int(units), activation="relu")(x)
        x = keras.layers.Dropout(mlp_dropout)(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="transformer")
