"""The machine's floor (matmul and memory rates) and what a dense net's training asks of it.

A roofline in two numbers: how fast this machine multiplies float32 matrices (numpy, all the
cores numpy's BLAS uses) and how fast it copies memory. :func:`dense_cost` counts the
floating-point work of training and validating dense nets and the bytes Adam moves;
:func:`fractions` says what share of the floor a measured wall time reached. Used by
benchmarks/protocols.py; run alone it prints the floor:

    python benchmarks/roofline.py
    python benchmarks/roofline.py --repeats 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np

MATMUL_N = 2048
COPY_BYTES = 256 * 2**20  # 256 MiB


def machine_floor(repeats: int = 10) -> dict:
    """The floor of this machine: ``matmul_gflops``, ``memory_gbps``, ``cores``.

    ``matmul_gflops``: numpy float32 ``a @ b`` of two 2048 x 2048 matrices (random normal), the
    best of ``repeats`` timings, counted as 2 * 2048**3 floating-point operations (a multiply and
    an add per term), in 1e9 per second. One untimed product first (BLAS start-up).

    ``memory_gbps``: ``np.copyto(dst, src)`` of a 256 MiB float32 array into a preallocated
    one, the best of 5 timings, counting the bytes read and the bytes written (2 x 256 MiB per
    copy), in 1e9 bytes per second. The first copy touches ``dst``'s pages for the first time;
    the best of 5 leaves that out.

    ``cores``: ``len(os.sched_getaffinity(0))``, the cores this process may run on.
    """
    rng = np.random.default_rng(0)
    a = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    b = rng.standard_normal((MATMUL_N, MATMUL_N), dtype=np.float32)
    a @ b
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    matmul_gflops = 2 * MATMUL_N**3 / best / 1e9
    del a, b

    src = np.ones(COPY_BYTES // 4, dtype=np.float32)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - started)
    memory_gbps = 2 * COPY_BYTES / best / 1e9
    return {"matmul_gflops": matmul_gflops, "memory_gbps": memory_gbps,
            "cores": len(os.sched_getaffinity(0))}


def dense_cost(units: list[int], train_examples: int, val_examples: int, epochs: int,
               models: int, batch_size: int) -> dict:
    """What training ``models`` dense nets of layer sizes ``units`` asks: params, flops, bytes.

    ``units`` lists the layer widths, input first: ``[784, 256, 10]`` is 784 -> 256 -> 10.
    Each model trains ``epochs`` epochs over ``train_examples`` in batches of ``batch_size``
    with Adam and is validated on ``val_examples`` after every epoch.

    - ``params``: P = sum(in * out + out) over the layers (weights and biases) of one model.
    - ``flops``: counts the weights' multiply-adds only (W = sum(in * out); biases, activations,
      the loss, dropout and Adam's arithmetic are left out): training 6 * W per example (forward
      2, backward 4: the gradient of the inputs and of the weights), validation 2 * W per
      example (forward): 6 * W * train_examples * epochs * models + 2 * W * val_examples *
      epochs * models.
    - ``adam_bytes``: per step and model, Adam reads the weights, the gradient, m and v and
      writes the weights, m and v (7 float32 arrays of P), and the backward pass writes the
      gradient (1 more): 8 * 4 * P bytes per step, with ceil(train_examples / batch_size) *
      epochs * models steps. Activations and the data are left out.

    Example (4 -> 3 -> 2: W = 12 + 6 = 18, P = 18 + 5 = 23; 3 steps per epoch):
        >>> dense_cost([4, 3, 2], train_examples=10, val_examples=5, epochs=2, models=3,
        ...            batch_size=4)
        {'params': 23, 'flops': 7560, 'adam_bytes': 13248}
    """
    layers = list(zip(units[:-1], units[1:], strict=True))
    weights = sum(fan_in * fan_out for fan_in, fan_out in layers)
    params = weights + sum(fan_out for _, fan_out in layers)
    flops = (6 * weights * train_examples + 2 * weights * val_examples) * epochs * models
    steps = math.ceil(train_examples / batch_size) * epochs * models
    return {"params": params, "flops": flops, "adam_bytes": 8 * 4 * params * steps}


def fractions(cost: dict, wall_s: float, floor: dict) -> dict:
    """How much of the floor ``wall_s`` seconds reached for ``cost`` (from :func:`dense_cost`).

    ``gflops`` = flops / wall_s / 1e9 and ``matmul_fraction`` its share of the floor's matmul
    rate; ``gbps`` = adam_bytes / wall_s / 1e9 and ``memory_fraction`` its share of the floor's
    memory rate; ``floor_s`` = max(flops / matmul rate, adam_bytes / memory rate), the
    roofline's lower bound on the time; ``of_floor`` = floor_s / wall_s.

    Example:
        >>> floor = {"matmul_gflops": 100.0, "memory_gbps": 10.0, "cores": 2}
        >>> fractions({"flops": 2e11, "adam_bytes": 4e10}, 8.0, floor)["floor_s"]
        4.0
    """
    gflops = cost["flops"] / wall_s / 1e9
    gbps = cost["adam_bytes"] / wall_s / 1e9
    floor_s = max(cost["flops"] / (floor["matmul_gflops"] * 1e9),
                  cost["adam_bytes"] / (floor["memory_gbps"] * 1e9))
    return {"gflops": gflops, "matmul_fraction": gflops / floor["matmul_gflops"],
            "gbps": gbps, "memory_fraction": gbps / floor["memory_gbps"],
            "floor_s": floor_s, "of_floor": floor_s / wall_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="matmul timings (best of)")
    args = parser.parse_args()
    print(json.dumps(machine_floor(args.repeats), indent=1))


if __name__ == "__main__":
    main()
