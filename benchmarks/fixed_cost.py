"""Where a trial's fixed cost goes: building the replicas, the first (tracing, compiling) epoch,
and a steady epoch, for one trial of the Q6 sweep (10 seeds) on this process' Keras backend.

    HPO_DATA_DIR=/work/shared/datasets python benchmarks/fixed_cost.py --width 4
    HPO_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python benchmarks/fixed_cost.py --width 4
    HPO_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax python benchmarks/fixed_cost.py --again

Each figure is one measurement in a fresh process (imports and data loading are timed apart).
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--limit-train", type=int, default=6000)
    parser.add_argument("--again", action="store_true",
                        help="then time a second pack of the same architecture (kept compiles)")
    args = parser.parse_args()
    started = time.perf_counter()
    import keras

    from hpo.models import builders
    from hpo.runner import load_data
    from hpo.sweep import load_sweep
    from hpo.training.job import TrainingJob
    from hpo.training.packed import epoch_rows
    from hpo.training.packs import make_pack

    sweep = load_sweep("sweeps/mnist-q6-width.toml", [f"data.limit_train={args.limit_train}"])
    data = load_data(sweep)
    keras.backend.clear_session()
    times = {"imports and data": time.perf_counter() - started}
    job = TrainingJob(builders.resolve("mlp"), {**sweep.model.params, "width": args.width},
                      sweep.train, data)
    seeds = list(range(args.seeds))
    splits = [data.split(seed) for seed in seeds]
    started = time.perf_counter()
    pack = make_pack([job] * len(seeds), seeds, splits)
    times["make_pack (build, compile, create variables)"] = time.perf_counter() - started
    for epoch, name in enumerate(("first epoch (trace, compile, run)", "second epoch",
                                  "third epoch")):
        started = time.perf_counter()
        pack.fit_epoch(epoch_rows(seeds, splits, epoch))
        times[name] = time.perf_counter() - started
    pack.close()
    if args.again:  # a second pack of the same architecture in this process
        started = time.perf_counter()
        again = make_pack([job] * len(seeds), seeds, splits)
        again.fit_epoch(epoch_rows(seeds, splits, 0))
        again.close()
        times["again: make_pack and first epoch"] = time.perf_counter() - started
    print(json.dumps({"backend": keras.backend.backend(), "pack": type(pack).__name__,
                      **vars(args), **{k: round(v, 2) for k, v in times.items()}}))


if __name__ == "__main__":
    main()
