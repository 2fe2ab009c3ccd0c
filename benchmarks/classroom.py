"""The classroom ten-run loop, as the assignment writes it: build, compile, fit, one seed at a time.

Prints the per-seed final validation accuracies as JSON. Used by benchmarks/packing.py.

    python benchmarks/classroom.py --seeds 10 --epochs 3
"""

import argparse
import json
import os

import keras
import numpy as np

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", type=int, default=10)
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
parser.add_argument("--limit-train", type=int, default=0)
args = parser.parse_args()

path = os.path.join(os.environ.get("HPO_DATA_DIR", ""), "mnist.npz")
if os.path.exists(path):
    with np.load(path) as f:
        x_train, y_train, x_test, y_test = (f[k] for k in ("x_train", "y_train", "x_test",
                                                           "y_test"))
else:
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0
if args.limit_train:
    x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]

accuracies = []
for seed in range(args.seeds):
    keras.utils.set_random_seed(seed)
    if args.model == "mlp":
        model = keras.Sequential([
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
    else:
        model = keras.Sequential([
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=32,
                        validation_data=(x_test, y_test), verbose=0)
    accuracies.append(history.history["val_accuracy"][-1])
print(json.dumps(accuracies))
