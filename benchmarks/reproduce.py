"""Run the reference protocols on full data and write studies/REPRODUCTION.md.

Each protocol is a shipped sweep file run with `hpo.run_sweep` into its default database
(`studies/<name>.db`), so an interrupted reproduction resumes where it stopped. The report is
rebuilt from every protocol database that exists, beside the published figures.

    python benchmarks/reproduce.py mnist            # run the MNIST protocols Q1-Q7, then report
    python benchmarks/reproduce.py --report-only    # rebuild the report from the databases
    python benchmarks/reproduce.py forda-transformer --set train.epochs=2 --name-suffix -2ep
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import hpo  # noqa: E402
from hpo.progress import LineProgress  # noqa: E402

GROUPS = {
    "mnist": [
        "mnist-q1-mse-sgd", "mnist-q2-mse-sgd-20ep", "mnist-q3-mse-sgd-lr001",
        "mnist-q4-mse-adam", "mnist-q5-softmax-ce-adam", "mnist-q6-width", "mnist-q7a-layers",
        "mnist-q7b-two-widths", "mnist-q7c-dropout", "mnist-q7d-final",
    ],
    "cifar10": [
        "cifar10-q8-mlp-width", "cifar10-q9-cnn", "cifar10-q10a-cnn-dropout",
        "cifar10-q10b-deeper", "cifar10-q10c-dense", "cifar10-q10d-batchnorm",
        "cifar10-q10e-dropout",
    ],
    "forda": ["forda-transformer", "forda-transformer-prenorm", "forda-transformer-tpe"],
}
# Published figures (accuracy), by sweep and, where the sweep has several configurations, by
# the configuration they belong to.
PUBLISHED = {
    "mnist-q7d-final": "0.9805",
    "cifar10-q8-mlp-width": {"width=32": "0.2688 (W = 32)"},
    "cifar10-q10a-cnn-dropout": "0.7103 (best rate)",
    "cifar10-q10b-deeper": "0.7332",
    "cifar10-q10c-dense": "0.7353",
    "cifar10-q10d-batchnorm": "0.7431",
    "cifar10-q10e-dropout": "0.7450",
    "forda-transformer": "0.843 (150 epochs); 0.614 (2 epochs)",
}
REPORT = ROOT / "studies" / "REPRODUCTION.md"
LOG = ROOT / "studies" / "reproduction-log.tsv"  # one line per protocol run: name, wall, command


def machine() -> str:
    import keras

    return (f"{platform.machine()} {os.cpu_count()} cores, {platform.system()}, Python "
            f"{platform.python_version()}, Keras {keras.__version__} "
            f"({keras.backend.backend()} backend)")


def run(name: str, overrides: list[str], suffix: str, command: str) -> None:
    overrides = list(overrides)
    if suffix:
        overrides.append(f"study.name='{name}{suffix}'")
    sweep = hpo.load_sweep(ROOT / "sweeps" / f"{name}.toml", overrides)
    started = time.perf_counter()
    hpo.run_sweep(sweep, progress=LineProgress(every_s=60))
    wall = time.perf_counter() - started
    LOG.parent.mkdir(exist_ok=True)
    with LOG.open("a") as log:
        log.write(f"{sweep.study.name}\t{wall:.0f}\t{machine()}\t{command}\n")


def report() -> None:
    runs_log = {}
    if LOG.exists():
        for line in LOG.read_text().splitlines():
            name, wall, where, command = line.split("\t")
            entry = runs_log.setdefault(name, {"wall": 0.0, "where": where, "command": command})
            entry["wall"] += float(wall)
    rows, protocols = [], []
    for db in sorted((ROOT / "studies").glob("*.db")):
        with hpo.Results(f"sqlite:///{db}") as results:
            for study in results.study_names():
                base = next((n for group in GROUPS.values() for n in group
                             if study == n or study.startswith(n + "-")), None)
                if base is None:
                    continue
                trials = results.trials(study)
                runs = results.runs(study)
                params = [c for c in trials.columns if c not in _NOT_PARAMS]
                complete = trials[trials["state"] == "COMPLETE"].sort_values(params or "number")
                for row in complete.to_dict("records"):
                    config = ", ".join(f"{k}={_fmt(row[k])}" for k in params) or "—"
                    published = PUBLISHED.get(base, "—")
                    if isinstance(published, dict):
                        published = published.get(config, "—")
                    if study != base and published != "—":
                        published = f"full protocol: {published}"  # a reduced run
                    epochs = runs.loc[runs["trial"] == row["number"], "epochs"]
                    std = "" if row["std"] != row["std"] else f" ± {row['std']:.4f}"
                    ci = ("—" if row["ci95_low"] != row["ci95_low"]
                          else f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]")
                    rows.append(f"| `{study}` | {config} | {published} | {row['mean']:.4f}{std} "
                                f"| {ci} | {row['n']} | {_epochs(epochs)} |")
                meta = runs_log.get(study, {})
                protocols.append(f"| `{study}` | {_wall(meta.get('wall'))} | "
                                 f"{meta.get('where', '—')} | `{meta.get('command', '—')}` |")
    lines = [
        "# Reproduction of the reference protocols",
        "",
        "Written by `benchmarks/reproduce.py` from the study databases under `studies/`. The",
        "value is each sweep's objective: the last epoch's validation accuracy on the test split",
        "for MNIST and CIFAR-10, the test accuracy after early stopping for FordA; mean ± std over",
        "seeds (ddof 1) with the Student-t 95 % CI.",
        "",
        "| protocol | configuration | published | hpo mean ± std | 95 % CI | n | epochs |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "How each was run (wall time: the whole protocol, every trial):",
        "",
        "| protocol | wall | machine | command |",
        "|---|---|---|---|",
        *protocols,
        "",
    ]
    notes = ROOT / "benchmarks" / "REPRODUCTION_NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}")


_NOT_PARAMS = {"number", "state", "n", "mean", "var", "std", "sem", "ci95_low", "ci95_high",
               "value"}


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _epochs(epochs) -> str:
    if epochs.empty:
        return "—"
    low, high = int(epochs.min()), int(epochs.max())
    return str(low) if low == high else f"{low}–{high}"


def _wall(seconds: float | None) -> str:
    if not seconds:
        return "—"
    minutes, s = divmod(int(seconds), 60)
    return f"{minutes} min {s:02d} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("protocols", nargs="*", help="sweep names or groups: mnist, cifar10, forda")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--name-suffix", default="", help="study-name suffix for reduced runs")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    command = "python benchmarks/reproduce.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if os.environ.get("KERAS_BACKEND"):
        command = f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} {command}"
    os.chdir(ROOT)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not args.report_only:
        for item in args.protocols:
            for name in GROUPS.get(item, [item]):
                print(f"== {name}", flush=True)
                run(name, args.overrides, args.name_suffix, command)
    report()


if __name__ == "__main__":
    main()
