"""Packed seeds against the classroom loop: whole-process wall times, per-seed accuracies.

Side by side, on full MNIST, 10 seeds x 3 epochs, batch 32, validation on the test split:
  1. benchmarks/classroom.py (Sequential, compile, fit in a Python for loop; TensorFlow);
  2. `hpo run` with `protocol.pack = false`;
  3. `hpo run` with packing (the default);
each as its own process, --repeats times (medians reported), and 2-3 also with KERAS_BACKEND=jax.
Then hpo's bookkeeping (database writes and Optuna, everything but training) in one in-process run.
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


def bookkeeping(args, env_backend: str) -> tuple[float, float]:
    """(seconds of bookkeeping, seconds in total) for one packed trial, measured in process."""
    code = f"""
import json, time, os
import hpo.runner as runner
from hpo.store import Store
from hpo.store.recorder import Recorder
from hpo.progress import Progress
from hpo.sweep import load_sweep
overrides = ["train.epochs={args.epochs}", "protocol.repeats={args.seeds}",
             "data.limit_train={args.limit_train}"]
if "{args.model}" == "cnn":
    overrides.append("data.dataset='benchmarks.mnist_images:load'")
sweep = load_sweep("{SWEEPS[args.model]}", overrides)
data = runner.load_data(sweep)
store = Store.open("sqlite:///" + os.path.join("{tempfile.mkdtemp()}", "b.db"), create=True)
study = runner.open_study(sweep, store)
recorder = Recorder(store.engine)
training = [0.0]
train = runner.train
def timed_train(*a, **k):
    began = time.perf_counter(); out = train(*a, **k); training[0] += time.perf_counter() - began
    return out
runner.train = timed_train
objective = runner.Objective(sweep, data, recorder, Progress())
progress = Progress(); progress.sweep_started(sweep, 1, 0); objective.progress = progress
began = time.perf_counter()
study.optimize(objective, n_trials=1)
total = time.perf_counter() - began
print(json.dumps([total - (training[0] - recorder.seconds), total]))
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
    lines += ["", "hpo's bookkeeping (database writes and Optuna, i.e. everything in the trial "
              "but training) in one packed trial: " + "; ".join(
                  f"{backend} {book:.2f} s of {total:.1f} s = {100 * book / total:.2f} %"
                  for backend, (book, total) in books.items()) + ".", ""]
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
