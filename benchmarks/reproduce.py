"""Run the reference protocols on full data and write studies/REPRODUCTION.md.

Each protocol is a shipped sweep file run with `hpo.run_sweep` into its default database
(`studies/<name>.db`), so an interrupted reproduction resumes where it stopped. The report is
`hpo report --format md` over every protocol database that exists, beside the published figures
of `studies/published.toml` (a verdict per row), with the run log and
`benchmarks/REPRODUCTION_NOTES.md` appended.

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
import tempfile
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
    """``hpo report`` over every reproduction study with a database, beside the published
    figures of ``studies/published.toml``; the run log and the notes are appended."""
    from hpo.cli import main as hpo

    runs_log = {}
    if LOG.exists():
        for line in LOG.read_text().splitlines():
            name, wall, where, command = line.split("\t")
            entry = runs_log.setdefault(name, {"wall": 0.0, "where": where, "command": command})
            entry["wall"] += float(wall)
    # The shipped protocols, and the reduced runs this script logged (not the demo's study).
    known = {n for group in GROUPS.values() for n in group} | set(runs_log)
    studies = sorted(p.stem for p in (ROOT / "studies").glob("*.db") if p.stem in known)
    lines = ["## How each was run", "",
             "Wall time: the whole protocol, every trial, as `benchmarks/reproduce.py` timed it.",
             "", "| protocol | wall | machine | command |", "|---|---|---|---|"]
    for study in studies:
        meta = runs_log.get(study, {})
        lines.append(f"| `{study}` | {_wall(meta.get('wall'))} | {meta.get('where', '—')} | "
                     f"`{meta.get('command', '—')}` |")
    notes = ROOT / "benchmarks" / "REPRODUCTION_NOTES.md"
    text = "\n".join(lines) + "\n\n" + (notes.read_text() if notes.exists() else "")
    with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as handle:
        handle.write(text)
    command = ["report", *studies, "--format", "md", "--out", str(REPORT.relative_to(ROOT)),
               "--published", "studies/published.toml", "--notes", handle.name,
               "--title", "Reproduction of the reference protocols"]
    print("hpo " + " ".join(shlex.quote(c) for c in command), flush=True)
    code = hpo(command)
    os.unlink(handle.name)
    if code:
        raise SystemExit(code)


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
