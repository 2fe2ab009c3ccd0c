"""Whole protocols side by side: a baseline revision against the current code, TensorFlow and JAX.

Workloads (each `hpo run SWEEP --storage sqlite:///<tmp>/<name>.db --set ...`, full MNIST,
validation on the test split):
  one-config  sweeps/mnist-q5-softmax-ce-adam.toml, train.epochs=3, protocol.repeats=10
              (784-32-10, Adam, 10 seeds x 3 epochs), and benchmarks/classroom.py with the same
              10 seeds x 3 epochs (TensorFlow, once);
  q6          sweeps/mnist-q6-width.toml as shipped (widths 2..256, 10 seeds x 10 epochs each);
  q7d         sweeps/mnist-q7d-final.toml as shipped (784-128-128-10, dropout 0.2);
  q7d-nodrop  the same with model.dropout=0.0.
Variants, per backend (KERAS_BACKEND=tensorflow, jax): `baseline`, `python -m hpo` run from a
git worktree of --baseline (/tmp/hpo-baseline-<commit>, made with `git worktree add --detach`
when absent; cwd and PYTHONPATH = the worktree, so its package and its sweep files are used),
and `current`, run from this repository's root (cwd and PYTHONPATH = the root). Every
(workload, backend, variant) runs once, as its own process, one after another; the wall time is
the whole process's (time.perf_counter around it: start-up, imports, data loading included).
After each hpo run the database is read (hpo.Results, by the variant's own package) for every
run's final val_accuracy, compared between baseline and current by trial params and seed, and
each trial's duration (Optuna's datetime_complete - datetime_start).
benchmarks/roofline.py's machine_floor() is measured before and after; the roofline fractions
use their mean. A failing command is reported (its stderr's tail) and its cell marked "failed";
the other variants still run.
Appends a section to benchmarks/PACKING.md (or --out) and prints it.

    HPO_DATA_DIR=/work/shared/datasets python benchmarks/protocols.py --baseline 2cdf4b2
    HPO_DATA_DIR=/work/shared/datasets python benchmarks/protocols.py --baseline HEAD \\
        --only one-config,q7d --backends tensorflow --limit-train 512 --epochs 1 --out /tmp/p.md
    python benchmarks/protocols.py --baseline HEAD --dry-run
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roofline import dense_cost, fractions, machine_floor

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "PACKING.md"
MNIST_TRAIN, MNIST_TEST, BATCH = 60_000, 10_000, 32
BACKENDS = {"tensorflow": "TF", "jax": "JAX"}
VARIANTS = ("baseline", "current")
# name: (sweep file, overrides, epochs as shipped, [(layer units, models)])
WORKLOADS = {
    "one-config": ("sweeps/mnist-q5-softmax-ce-adam.toml",
                   ["train.epochs=3", "protocol.repeats=10"], 3, [([784, 32, 10], 10)]),
    "q6": ("sweeps/mnist-q6-width.toml", [], 10,
           [([784, w, 10], 10) for w in (2, 4, 8, 16, 32, 64, 128, 256)]),
    "q7d": ("sweeps/mnist-q7d-final.toml", [], 10, [([784, 128, 128, 10], 10)]),
    "q7d-nodrop": ("sweeps/mnist-q7d-final.toml", ["model.dropout=0.0"], 10,
                   [([784, 128, 128, 10], 10)]),
}
CLASSROOM = "one-config"  # the workload with a classroom loop
# Run by the variant's own package (cwd, PYTHONPATH): per-run final val_accuracy, per-trial
# params and duration, as one JSON line.
READ = """
import json, math, sys
import optuna
import hpo
optuna.logging.set_verbosity(optuna.logging.WARNING)
url = sys.argv[1]
with hpo.Results(url) as results:
    name = results.study_names()[0]
    runs = results.runs(name)
trials = []
for t in optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False):
    seconds = None
    if t.datetime_start is not None and t.datetime_complete is not None:
        seconds = (t.datetime_complete - t.datetime_start).total_seconds()
    trials.append({"number": t.number, "params": t.params, "state": t.state.name,
                   "seconds": seconds, "skipped": "hpo.skipped" in t.user_attrs})
column = runs["val_accuracy"] if "val_accuracy" in runs else [math.nan] * len(runs)
rows = [{"trial": int(t), "seed": int(s), "state": st, "error": e,
         "val_accuracy": None if v is None or math.isnan(v) else float(v)}
        for t, s, st, e, v in zip(runs["trial"], runs["seed"], runs["state"], runs["error"],
                                  column)]
print(json.dumps({"study": name, "trials": trials, "runs": rows}))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()


def baseline_worktree(rev: str, dry_run: bool) -> tuple[Path, str]:
    """The worktree of ``rev`` (made when absent) and ``rev``'s full commit."""
    commit = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    path = Path(f"/tmp/hpo-baseline-{commit[:10]}")
    add = ["git", "worktree", "add", "--detach", str(path), commit]
    if path.exists():
        there = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True,
                               text=True).stdout.strip()
        if there != commit:
            raise SystemExit(f"{path} exists but is at {there or 'no commit'}, not {commit}; "
                             "remove it (git worktree remove) or pick another --baseline")
    elif dry_run:
        print(f"(cd {ROOT} && {shlex.join(add)})")
    else:
        subprocess.run(add, cwd=ROOT, check=True, capture_output=True, text=True)
    return path, commit


def sweep_command(args, workload: str, url: str) -> list[str]:
    sweep, overrides, _, _ = WORKLOADS[workload]
    overrides = list(overrides)
    if args.epochs:
        overrides = [o for o in overrides if not o.startswith("train.epochs=")]
        overrides.append(f"train.epochs={args.epochs}")
    if args.limit_train:
        overrides.append(f"data.limit_train={args.limit_train}")
    command = [sys.executable, "-m", "hpo", "run", sweep, "--storage", url]
    for override in overrides:
        command += ["--set", override]
    return command


def classroom_command(args) -> list[str]:
    return [sys.executable, "benchmarks/classroom.py", "--seeds", "10",
            "--epochs", str(args.epochs or WORKLOADS[CLASSROOM][2]),
            "--limit-train", str(args.limit_train)]


def shown(command: list[str], cwd: Path, env: dict) -> str:
    keys = ("KERAS_BACKEND", "PYTHONPATH", "HPO_DATA_DIR")
    prefix = " ".join(f"{k}={shlex.quote(env[k])}" for k in keys if env.get(k))
    return f"(cd {cwd} && {prefix} {shlex.join(command)})"


def run_timed(command: list[str], cwd: Path, env: dict) -> dict:
    """Run ``command``; {"wall": whole-process seconds, "error": None or the stderr's tail}."""
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    error = None
    if result.returncode != 0:
        error = f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    return {"wall": wall, "error": error, "stdout": result.stdout}


def read_database(url: str, cwd: Path, env: dict) -> dict:
    result = subprocess.run([sys.executable, "-c", READ, url], cwd=cwd, env=env,
                            capture_output=True, text=True)
    try:
        if result.returncode != 0:
            raise ValueError(f"exit {result.returncode}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RuntimeError(f"reading {url} failed ({exc}):\n{result.stderr[-3000:]}") from None


def incomplete(data: dict) -> str | None:
    """Why the sweep did not finish cleanly (``hpo run`` exits 0 when runs fail), or None."""
    trials = [t for t in data["trials"] if not t["skipped"]]
    runs = data["runs"]
    bad_trials = [t for t in trials if t["state"] != "COMPLETE"]
    bad_runs = [r for r in runs if r["state"] != "COMPLETE"]
    if not runs or bad_trials or bad_runs:
        first = next((r["error"] for r in bad_runs if r["error"]), None)
        return (f"{len(bad_trials)} of {len(trials)} trials and {len(bad_runs)} of {len(runs)} "
                "runs not COMPLETE" + (f"; first run error: {first}" if first else ""))
    return None


def code_state() -> str:
    """sha1 (12 digits) of the uncommitted changes to hpo/ and sweeps/, or "clean"."""
    diff = subprocess.run(["git", "diff", "HEAD", "--", "hpo", "sweeps"], cwd=ROOT,
                          capture_output=True, check=True).stdout
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "hpo", "sweeps")
    if not diff and not untracked:
        return "clean"
    return hashlib.sha1(diff + untracked.encode()).hexdigest()[:12]


def seed_values(data: dict) -> dict[tuple[str, int], float | None]:
    """(trial params as JSON, seed) -> final val_accuracy."""
    params = {t["number"]: json.dumps(t["params"], sort_keys=True) for t in data["trials"]}
    return {(params[r["trial"]], r["seed"]): r["val_accuracy"] for r in data["runs"]}


def max_difference(a: dict, b: dict) -> tuple[float, int, int]:
    """(max |a - b| over the common keys, keys compared, keys in only one)."""
    common = a.keys() & b.keys()
    worst = 0.0
    for key in common:
        x, y = a[key], b[key]
        if x is None and y is None:
            continue
        worst = max(worst, math.inf if x is None or y is None else abs(x - y))
    return worst, len(common), len(a.keys() ^ b.keys())


def mean_floor(before: dict, after: dict) -> dict:
    return {key: statistics.mean([before[key], after[key]]) for key in before}


def floor_text(floor: dict) -> str:
    return (f"matmul {floor['matmul_gflops']:.1f} GFLOP/s, memory {floor['memory_gbps']:.1f} "
            "GB/s")


def workload_cost(args, workload: str) -> dict:
    _, _, epochs, nets = WORKLOADS[workload]
    total = {"params": 0, "flops": 0, "adam_bytes": 0}
    for units, models in nets:
        cost = dense_cost(units, args.limit_train or MNIST_TRAIN, MNIST_TEST,
                          args.epochs or epochs, models, BATCH)
        for key in total:
            total[key] += cost[key]
    return total


def label(backend: str, variant: str) -> str:
    return "classroom loop" if variant == "classroom" else f"{variant} {BACKENDS[backend]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV",
                        help="git revision of the baseline (run from a worktree)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma list of workloads (default: {','.join(WORKLOADS)})")
    parser.add_argument("--backends", default="tensorflow,jax",
                        help="comma list of Keras backends (default: tensorflow,jax)")
    parser.add_argument("--limit-train", type=int, default=0, metavar="N",
                        help="first N training examples only (a quick try)")
    parser.add_argument("--epochs", type=int, default=0, metavar="N",
                        help="train.epochs=N for every workload (a quick try)")
    parser.add_argument("--out", type=Path, default=OUT,
                        help="Markdown file to append the section to (default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    workloads = [w for w in args.only.split(",") if w]
    backends = [b for b in args.backends.split(",") if b]
    for name, chosen, known in (("--only", workloads, WORKLOADS), ("--backends", backends,
                                                                   BACKENDS)):
        unknown = [c for c in chosen if c not in known]
        if unknown or not chosen:
            parser.error(f"{name} {','.join(unknown) or '(empty)'}: expected a comma list of "
                         + ", ".join(known))
    command_line = "python benchmarks/protocols.py " + shlex.join(sys.argv[1:])

    worktree, commit = baseline_worktree(args.baseline, args.dry_run)
    head = git("rev-parse", "--short=10", "HEAD")
    state_before = code_state()
    base_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    where = {"baseline": worktree, "current": ROOT}
    tmp = Path("<tmpdir>") if args.dry_run else Path(tempfile.mkdtemp(prefix="hpo-protocols-"))

    def env_for(backend: str, variant: str) -> dict:
        env = {**base_env, "KERAS_BACKEND": backend}
        if variant != "classroom":
            env["PYTHONPATH"] = str(where[variant])
        return env

    # The plan: (workload, backend, variant, command, cwd, env, url or None).
    plan = []
    for workload in workloads:
        if workload == CLASSROOM:
            plan.append((workload, "tensorflow", "classroom", classroom_command(args), ROOT,
                         env_for("tensorflow", "classroom"), None))
        for backend in backends:
            for variant in VARIANTS:
                url = f"sqlite:///{tmp}/{workload}-{backend}-{variant}.db"
                plan.append((workload, backend, variant, sweep_command(args, workload, url),
                             where[variant], env_for(backend, variant), url))
    if args.dry_run:
        for *_, command, cwd, env, _ in plan:
            print(shown(command, cwd, env))
        return

    # The baseline must import the worktree's package, not this checkout's (installed editable).
    probe = subprocess.run([sys.executable, "-c", "import hpo; print(hpo.__file__)"],
                           cwd=worktree, env=env_for("tensorflow", "baseline"),
                           capture_output=True, text=True)
    if not probe.stdout.strip().startswith(str(worktree)):
        raise SystemExit(f"the baseline imports {probe.stdout.strip() or probe.stderr[-500:]}, "
                         f"not {worktree}/hpo")

    print("machine floor (before) ...", flush=True)
    floor_before = machine_floor()
    print(f"  {floor_text(floor_before)}", flush=True)
    cells: dict[tuple[str, str, str], dict] = {}
    for workload, backend, variant, command, cwd, env, url in plan:
        print(f"{workload} / {label(backend, variant)}: {shown(command, cwd, env)}", flush=True)
        cell = run_timed(command, cwd, env)
        cell["command"] = shown(command, cwd, env)
        if cell["error"] is None and url is not None:
            try:
                cell["data"] = read_database(url, cwd, env)
                cell["error"] = incomplete(cell["data"])
            except RuntimeError as exc:
                cell["error"] = str(exc)
        cells[(workload, backend, variant)] = cell
        if cell["error"]:
            print(f"  FAILED after {cell['wall']:.1f} s: {cell['error']}", flush=True)
        else:
            print(f"  {cell['wall']:.1f} s", flush=True)
    print("machine floor (after) ...", flush=True)
    floor_after = machine_floor()
    floor = mean_floor(floor_before, floor_after)
    state_after = code_state()
    if state_before == state_after == "clean":
        state = "no uncommitted changes to hpo/ or sweeps/"
    elif state_before == state_after:
        state = (f"uncommitted changes to hpo/ or sweeps/ (sha1 of `git diff HEAD` and the "
                 f"untracked files' names: {state_before}), the same at the start and the end")
    else:
        state = (f"uncommitted changes to hpo/ or sweeps/ that CHANGED during the run (sha1 of "
                 f"`git diff HEAD` and the untracked files' names: {state_before} at the start, "
                 f"{state_after} at the end)")

    def ok(key: tuple[str, str, str]) -> dict | None:
        cell = cells.get(key)
        return cell if cell is not None and cell["error"] is None else None

    columns = [("tensorflow", "classroom")] + [(b, v) for b in BACKENDS for v in VARIANTS]
    quick = []
    if args.limit_train:
        quick.append(f"first {args.limit_train} training examples")
    if args.epochs:
        quick.append(f"{args.epochs} epoch{'s' if args.epochs > 1 else ''} per run")
    data_dir = (f"HPO_DATA_DIR={shlex.quote(os.environ['HPO_DATA_DIR'])} "
                if os.environ.get("HPO_DATA_DIR") else "")
    heading = f"## Whole protocols (issue 14): {time.strftime('%Y-%m-%d')}"
    if quick:
        heading += " — quick try, " + ", ".join(quick)
    lines = [
        heading,
        "",
        f"Command: `{data_dir}{command_line}`.",
        f"Baseline: `{args.baseline}` = {commit[:10]}, run from the worktree {worktree}; "
        f"current: {ROOT} at {head}, {state}.",
        f"Machine: {platform.platform()}, {platform.machine()}, "
        f"{floor_before['cores']} cores (sched_getaffinity), Python "
        f"{platform.python_version()}. Floor (benchmarks/roofline.py `machine_floor`: numpy "
        "float32 2048² matmul, best of 10; 256 MiB `np.copyto`, best of 5, read + write bytes): "
        f"before {floor_text(floor_before)}; after {floor_text(floor_after)}; the fractions "
        f"below use the mean, {floor_text(floor)}.",
        "",
        "Wall time: each variant once, as its own process, start to exit (interpreter and "
        "Keras start-up, imports, data loading and, for hpo, the database included); "
        "(×) = classroom loop ÷ this, where the workload has a classroom loop.",
        "",
        "| work | " + " | ".join(label(b, v) for b, v in columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for workload in workloads:
        classroom = ok((workload, "tensorflow", "classroom"))
        row = []
        for backend, variant in columns:
            cell = cells.get((workload, backend, variant))
            if cell is None:
                row.append("—")
            elif cell["error"]:
                row.append("failed")
            elif classroom is not None and variant != "classroom":
                row.append(f"{cell['wall']:.1f} s ({classroom['wall'] / cell['wall']:.2f}×)")
            else:
                row.append(f"{cell['wall']:.1f} s")
        lines.append(f"| {workload} | " + " | ".join(row) + " |")

    hpo_columns = [(b, v) for b in backends for v in VARIANTS]
    if "q6" in workloads:
        durations: dict[tuple[str, str], dict[int, float | None]] = {}
        for backend, variant in hpo_columns:
            cell = ok(("q6", backend, variant))
            if cell is not None:
                durations[(backend, variant)] = {
                    t["params"].get("width"): t["seconds"] for t in cell["data"]["trials"]
                    if not t["skipped"]}
        widths = sorted({w for d in durations.values() for w in d if w is not None})
        lines += ["", "q6, each trial's duration (Optuna's datetime_complete − datetime_start, "
                  "seconds) by width. Trials packed together run as one program and overlap: "
                  "equal start times mean a trial's duration is that of the shared program, "
                  "not its own share; printed as measured.", "",
                  "| width | " + " | ".join(label(b, v) for b, v in hpo_columns) + " |",
                  "|---" * (len(hpo_columns) + 1) + "|"]
        for width in widths:
            row = []
            for key in hpo_columns:
                seconds = durations.get(key, {}).get(width)
                row.append("—" if seconds is None else f"{seconds:.1f}")
            lines.append(f"| {width} | " + " | ".join(row) + " |")

    lines += ["", "Roofline (benchmarks/roofline.py): FLOPs count the dense layers' "
              "multiply-adds (6 per weight per training example, 2 per validation example, "
              "every epoch); Adam bytes = 8 float32 arrays of the parameters per step and model. "
              "Rates are over the whole-process wall time, so they understate the training "
              "loop's own. Floor s = max(FLOPs ÷ matmul rate, bytes ÷ memory rate); % of floor "
              "= floor s ÷ wall s.", ""]
    costs = {workload: workload_cost(args, workload) for workload in workloads}
    for workload, cost in costs.items():
        nets = WORKLOADS[workload][3]
        lines.append(f"- {workload}: {len(nets)} net{'s' if len(nets) > 1 else ''} × "
                     f"{nets[0][1]} models, {cost['params']:,} parameters (all nets), "
                     f"{cost['flops']:.3g} FLOPs, {cost['adam_bytes']:.3g} Adam bytes")
    lines += ["", "| work | variant | wall s | GFLOP/s | % of matmul | GB/s (Adam) | "
              "% of memory | floor s | % of floor |", "|---" * 9 + "|"]
    for workload in workloads:
        for backend, variant in columns:
            cell = ok((workload, backend, variant))
            if cell is None:
                continue
            f = fractions(costs[workload], cell["wall"], floor)
            lines.append(
                f"| {workload} | {label(backend, variant)} | {cell['wall']:.1f} | "
                f"{f['gflops']:.2f} | {100 * f['matmul_fraction']:.2f} | {f['gbps']:.2f} | "
                f"{100 * f['memory_fraction']:.2f} | {f['floor_s']:.2f} | "
                f"{100 * f['of_floor']:.2f} |")

    lines += ["", "Correctness: the largest |Δ val_accuracy| (final epoch) between baseline "
              "and current, over the runs with the same trial params and seed (runs compared; "
              "runs in only one of the two, if any).", "",
              "| work | " + " | ".join(f"max abs Δ, {BACKENDS[b]}" for b in backends) + " |",
              "|---" * (len(backends) + 1) + "|"]
    for workload in workloads:
        row = []
        for backend in backends:
            a, b = ok((workload, backend, "baseline")), ok((workload, backend, "current"))
            if a is None or b is None:
                row.append("n/a (failed)")
                continue
            worst, n, unmatched = max_difference(seed_values(a["data"]), seed_values(b["data"]))
            row.append(f"{worst:.3g} ({n} runs" + (f"; {unmatched} unmatched)" if unmatched
                                                   else ")"))
        lines.append(f"| {workload} | " + " | ".join(row) + " |")

    failed = [(key, cell) for key, cell in cells.items() if cell["error"]]
    if failed:
        lines += ["", "Failed:"]
        for (workload, backend, variant), cell in failed:
            tail = "\n".join(cell["error"].strip().splitlines()[-15:])
            lines += ["", f"- {workload} / {label(backend, variant)}: `{cell['command']}`", "",
                      "```", tail, "```"]
    text = "\n".join(lines) + "\n"

    existing = args.out.read_text() if args.out.exists() else ""
    separator = "" if not existing or existing.endswith("\n\n") else (
        "\n" if existing.endswith("\n") else "\n\n")
    with args.out.open("a") as out:
        out.write(separator + text)
    print()
    print(text)


if __name__ == "__main__":
    main()
