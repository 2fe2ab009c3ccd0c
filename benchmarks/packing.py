"""Packed seeds against the classroom loop: whole-process wall times, per-seed accuracies.

Side by side, on full MNIST, 10 seeds x 3 epochs, batch 32, validation on the test split:
  1. benchmarks/classroom.py (Sequential, compile, fit in a Python for loop; TensorFlow);
  2. `hpo run` with `protocol.pack = false`;
  3. `hpo run` with packing (the default);
each as its own process, --repeats times (medians reported), and 2-3 also with KERAS_BACKEND=jax.
Then hpo's bookkeeping (database writes and Optuna: everything in `run_sweep` but training, data
loading and the builder check) in one in-process run, as a share of the packed variant's median
whole-process wall time and of `run_sweep`'s own time.
Writes benchmarks/PACKING.md.

    python benchmarks/packing.py --repeats 3
    python benchmarks/packing.py --repeats 1 --model cnn --limit-train 10000 --epochs 1 --append
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "PACKING.md"
SWEEPS = {"mlp": "sweeps/mnist-q5-softmax-ce-adam.toml", "cnn": "sweeps/cifar10-q9-cnn.toml"}


def hpo_command(args, url: str, pack: bool) -> list[str]:
    command = [sys.executable, "-m", "hpo", "run", SWEEPS[args.model], "--storage", url,
               "--set", f"train.epochs={args.epochs}", "--set", f"protocol.repeats={args.seeds}",
               "--set", f"protocol.pack={'true' if pack else 'false'}",
               "--set", f"data.limit_train={args.limit_train}"]
    if args.model == "cnn":
        command += ["--set", "data.dataset='benchmarks.mnist_images:load'"]
    return command


def timed(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{result.stderr[-3000:]}")
    timed.stdout = result.stdout
    return wall


def final_accuracies(url: str) -> list[float]:
    import hpo

    with hpo.Results(url) as results:
        study = results.study_names()[0]
        runs = results.runs(study).sort_values("seed")
    return runs["val_accuracy"].tolist()


def bookkeeping(args, env_backend: str) -> tuple[float, float, float]:
    """(per-sweep set-up s, per-trial bookkeeping s, ``run_sweep`` s) for the packed sweep.

    ``run_sweep`` is what ``hpo run`` calls. Set-up: opening (creating) the database and the
    study, once per process. Per trial: everything else but training (net of the recorder's
    writes, which happen inside the trainer), data loading and the builder check, i.e. leases,
    Optuna's ask and tell, attributes, intermediate values, run and epoch rows.
    """
    code = f"""
import json, time, os
import hpo.objective as objective
import hpo.runner as runner
from hpo.store.recorder import Recorder
from hpo.sweep import load_sweep
recorders, spent = [], dict(train=0.0, data=0.0, builder=0.0, setup=0.0)
class CountedRecorder(Recorder):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        recorders.append(self)
def timed(name, function):
    def call(*a, **k):
        began = time.perf_counter()
        try:
            return function(*a, **k)
        finally:
            spent[name] += time.perf_counter() - began
    return call
class TimedStore(runner.Store):
    open = classmethod(timed("setup", runner.Store.open.__func__))
runner.Store = TimedStore
runner.open_study = timed("setup", runner.open_study)
runner.Recorder = CountedRecorder
objective.train_runs = timed("train", objective.train_runs)
runner.load_data = timed("data", runner.load_data)
runner.check_builder = timed("builder", runner.check_builder)
overrides = ["train.epochs={args.epochs}", "protocol.repeats={args.seeds}",
             "data.limit_train={args.limit_train}"]
if "{args.model}" == "cnn":
    overrides.append("data.dataset='benchmarks.mnist_images:load'")
sweep = load_sweep("{SWEEPS[args.model]}", overrides)
began = time.perf_counter()
runner.run_sweep(sweep, storage="sqlite:///" + os.path.join("{tempfile.mkdtemp()}", "b.db"))
total = time.perf_counter() - began
training = spent["train"] - sum(r.seconds for r in recorders)
rest = total - training - spent["data"] - spent["builder"] - spent["setup"]
print(json.dumps([spent["setup"], rest, total]))
"""
    env = {**os.environ, "KERAS_BACKEND": env_backend}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", choices=sorted(SWEEPS), default="mlp")
    parser.add_argument("--limit-train", type=int, default=0)
    parser.add_argument("--append", action="store_true", help="add to PACKING.md")
    args = parser.parse_args()
    command = "python benchmarks/packing.py " + shlex.join(sys.argv[1:])
    base_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    tf_env, jax_env = {**base_env, "KERAS_BACKEND": "tensorflow"}, {**base_env,
                                                                    "KERAS_BACKEND": "jax"}
    classroom = [sys.executable, "benchmarks/classroom.py", "--seeds", str(args.seeds),
                 "--epochs", str(args.epochs), "--model", args.model,
                 "--limit-train", str(args.limit_train)]
    variants = {
        "1 classroom loop (TensorFlow)": None,
        "2 hpo, pack = false (TensorFlow)": (False, tf_env),
        "3 hpo, packed (TensorFlow)": (True, tf_env),
        "2j hpo, pack = false (JAX)": (False, jax_env),
        "3j hpo, packed (JAX)": (True, jax_env),
    }
    walls: dict[str, list[float]] = {name: [] for name in variants}
    accuracies: dict[str, list[float]] = {}
    for repeat in range(args.repeats):
        for name, variant in variants.items():
            if variant is None:
                walls[name].append(timed(classroom, tf_env))
                accuracies[name] = json.loads(timed.stdout.strip().splitlines()[-1])
            else:
                pack, env = variant
                url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
                walls[name].append(timed(hpo_command(args, url, pack), env))
                accuracies[name] = final_accuracies(url)
            print(f"repeat {repeat + 1}: {name}: {walls[name][-1]:.1f} s", flush=True)
    books = {backend: bookkeeping(args, backend.lower()) for backend in ("TensorFlow", "JAX")}

    median = {name: statistics.median(w) for name, w in walls.items()}
    first = "1 classroom loop (TensorFlow)"
    title = (f"{args.model}, MNIST{'' if not args.limit_train else f' first {args.limit_train}'}"
             f", {args.seeds} seeds × {args.epochs} epochs, batch 32")
    lines = [
        f"## {title}",
        "",
        f"Command: `{command}` — {time.strftime('%Y-%m-%d')}, {machine()}.",
        "Whole-process wall time (start to exit, data loading and imports included), median of "
        f"{args.repeats}; ratio = classroom ÷ variant; per-seed accuracy = final validation "
        "accuracy (test split) of each seed; p = Welch's t-test against the classroom seeds.",
        "",
        "| variant | wall (median) | all walls | classroom ÷ this | mean ± std accuracy | p |",
        "|---|---|---|---|---|---|",
    ]
    for name in variants:
        acc = accuracies[name]
        p = stats.ttest_ind(acc, accuracies[first], equal_var=False).pvalue
        lines.append(
            f"| {name} | {median[name]:.1f} s | {', '.join(f'{w:.1f}' for w in walls[name])} | "
            f"{median[first] / median[name]:.2f}× | {statistics.mean(acc):.4f} ± "
            f"{statistics.stdev(acc):.4f} | {p:.3f} |"
        )
    lines += ["", "Per-seed final validation accuracy:", "",
              "| seed | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for seed in range(args.seeds):
        lines.append(f"| {seed} | " + " | ".join(f"{accuracies[n][seed]:.4f}" for n in variants)
                     + " |")
    packed = {"TensorFlow": "3 hpo, packed (TensorFlow)", "JAX": "3j hpo, packed (JAX)"}
    lines += ["", "hpo's bookkeeping, measured in one more packed run in process. Per trial "
              "(leases, Optuna's ask and tell, attributes, intermediate values, run and epoch "
              "rows: everything in `run_sweep` but training, data loading, the builder check and "
              "the set-up): " + "; ".join(
                  f"{backend} {book:.3f} s = {100 * book / median[packed[backend]]:.2f} % of the "
                  f"whole-process wall time ({median[packed[backend]]:.1f} s), "
                  f"{100 * book / total:.2f} % of `run_sweep` ({total:.1f} s)"
                  for backend, (_, book, total) in books.items())
              + ". Set-up, once per process and sweep (creating the database and the study; "
              "mostly Optuna importing alembic and reading its migration scripts): " + "; ".join(
                  f"{backend} {setup:.2f} s" for backend, (setup, _, _) in books.items()) + ".",
              ""]
    text = "\n".join(lines) + "\n"
    if args.append and OUT.exists():
        text = OUT.read_text() + "\n" + text
    else:
        text = ("# Packing benchmark\n\nWritten by `benchmarks/packing.py`; see its docstring.\n\n"
                + text)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
