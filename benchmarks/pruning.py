"""Pruning on the mean curve: how much training it saves, and whether the best trial survives.

The MNIST hidden-width protocol (sweeps/mnist-q6-width.toml: 8 widths 2..256, Adam, 10 epochs) is
run once per pruner, each as its own `hpo run` process on a fresh database: whole-process wall
time, epochs trained (sum over runs), trials pruned, and the best trial against the unpruned
sweep's. Writes benchmarks/PRUNING.md.

    python benchmarks/pruning.py --limit-train 2000 --repeats 3
    python benchmarks/pruning.py --limit-train 20000 --repeats 3 --append
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "PRUNING.md"
SWEEP = "sweeps/mnist-q6-width.toml"
PRUNERS = ("none", "median", "hyperband", "successive_halving")


def run(args, pruner: str, url: str) -> float:
    command = [sys.executable, "-m", "hpo", "run", SWEEP, "--storage", url,
               "--set", f"search.pruner='{pruner}'", "--set", f"protocol.repeats={args.repeats}",
               "--set", f"data.limit_train={args.limit_train}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(command)} failed:\n{done.stderr[-3000:]}")
    return wall


def summary(url: str) -> dict:
    import hpo

    with hpo.Results(url) as results:
        trials = results.trials("mnist-q6-width")
        runs = results.runs("mnist-q6-width")
    complete = trials[trials["state"] == "COMPLETE"]
    best = complete.loc[complete["value"].idxmax()]
    return {
        # A trial's seeds train together: its training time is its longest run's wall time.
        "train_s": float(runs.groupby("trial")["wall_s"].max().sum()),
        "epochs": int(runs["epochs"].sum()),
        "pruned": sorted(int(w) for w in trials.loc[trials["state"] == "PRUNED", "width"]),
        "best_width": int(best["width"]), "best_mean": float(best["value"]),
        "best_ci": (float(best["ci95_low"]), float(best["ci95_high"])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--append", action="store_true", help="add a section to PRUNING.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for pruner in PRUNERS:
            url = f"sqlite:///{Path(tmp) / pruner}.db"
            wall = run(args, pruner, url)
            rows.append({"pruner": pruner, "wall": wall, **summary(url)})
            print(pruner, rows[-1], flush=True)
    base = rows[0]
    command = (f"python benchmarks/pruning.py --limit-train {args.limit_train} "
               f"--repeats {args.repeats}" + (" --append" if args.append else ""))
    lines = [] if args.append else ["# Pruning on the mean curve (MNIST hidden width, "
                                    "assignment Q6)", ""]
    lines += [
        f"## {args.limit_train} training examples",
        "",
        f"Command: `{command}` ({platform.node()}, {os.cpu_count()} CPUs, "
        f"{time.strftime('%Y-%m-%d')}). Sweep `{SWEEP}`: 8 widths (2..256) × {args.repeats} "
        f"seeds × 10 epochs on {args.limit_train} training examples, validated on the test split, "
        "packed seeds, each pruner in its own `hpo run` process on a fresh SQLite database. The "
        "pruner judges the mean validation accuracy over seeds per epoch (median: after 3 "
        "finished trials, from epoch 3 on).",
        "",
        "| pruner | wall s | training s | training saved | epochs trained | pruned widths | "
        "best width | best mean [95 % CI] | same best as unpruned |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        saved = 1 - row["train_s"] / base["train_s"]
        low, high = row["best_ci"]
        lines.append(
            f"| {row['pruner']} | {row['wall']:.1f} | {row['train_s']:.1f} | {saved:.0%} | "
            f"{row['epochs']} of "
            f"{base['epochs']} | {', '.join(map(str, row['pruned'])) or '—'} | "
            f"{row['best_width']} | {row['best_mean']:.4f} [{low:.4f}, {high:.4f}] | "
            f"{'yes' if row['best_width'] == base['best_width'] else 'no'} |")
    lines += ["", "Wall time is the whole `hpo run` process (TensorFlow import, data loading, the "
              "builder check, every trial's model build and compile); training time sums each "
              "trial's longest run (its seeds train together), from the database. Epochs "
              "trained (summed over runs) is the machine-independent measure; this shared "
              "machine's wall times vary by tens of percent between identical runs.", ""]
    text = "\n".join(lines)
    if args.append:
        text = OUT.read_text() + "\n" + text
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
