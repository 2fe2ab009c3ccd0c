"""The ``hpo`` command: parse, call the public API, render. No logic of its own.

Bad input prints one line ``hpo: error: ...`` and exits 2; a failure at run time exits 1.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# TensorFlow's C++ log (start-up notices, a harmless tf.data attribute message per fit) would
# bury the progress lines; Python exceptions still report real failures.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from hpo.errors import HpoError  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo",
        description="Seeded, repeated hyperparameter sweeps for Keras on Optuna.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def storage_arg(p: argparse.ArgumentParser, default: str) -> None:
        p.add_argument("--storage", metavar="URL", help=f"database URL (default: {default})")

    run = commands.add_parser("run", help="run (or continue) a sweep")
    run.add_argument("sweep", type=Path, help="sweep file (TOML)")
    storage_arg(run, "the sweep's study.storage, else sqlite:///studies/<name>.db")
    run.add_argument("--n-trials", type=int, metavar="N",
                     help="finished trials the study should hold (default: search.n_trials "
                          "or the grid size)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     dest="overrides", help="override a sweep-file key (value read as TOML)")

    check = commands.add_parser("check", help="validate a sweep file and print its size")
    check.add_argument("sweep", type=Path)
    check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       dest="overrides")

    studies = commands.add_parser("studies", help="list the studies in a database")
    storage_arg(studies, "every studies/*.db")

    show = commands.add_parser("show", help="table of a study's trials: mean ± std, 95%% CI, n")
    show.add_argument("study")
    storage_arg(show, "sqlite:///studies/<STUDY>.db")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code = _COMMANDS[args.command](args)
    except HpoError as exc:
        if args.debug:
            raise
        print(f"hpo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted", file=sys.stderr)
        return 130
    return code or 0


def _run(args: argparse.Namespace) -> int:
    import optuna

    from hpo import progress
    from hpo.runner import run_sweep
    from hpo.sweep import load_sweep

    sweep = load_sweep(args.sweep, args.overrides)
    if args.n_trials is not None and args.n_trials < 1:
        raise HpoError(f"--n-trials = {args.n_trials}: expected an integer >= 1")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = run_sweep(sweep, storage=args.storage, n_trials=args.n_trials,
                      progress=progress.for_stream())
    url = args.storage or sweep.storage_url
    print(f"study {study.study_name} in {url}")
    return _show_table(url, study.study_name)


def _check(args: argparse.Namespace) -> int:
    from hpo.sweep import load_sweep

    sweep = load_sweep(args.sweep, args.overrides)
    trials, repeats, epochs = sweep.n_trials, sweep.protocol.repeats, sweep.train.epochs
    print(f"{args.sweep}: ok")
    print(f"  study {sweep.study.name!r} in {sweep.storage_url}, {sweep.study.direction} "
          f"{sweep.study.objective} ({sweep.study.reduce} epoch per seed)")
    print(f"  {trials} trials × {repeats} repeats × {epochs} epochs = {trials * repeats} runs, "
          f"{trials * repeats * epochs} epochs; sampler {sweep.search.sampler}")
    for name, param in sweep.search.space.items():
        print(f"  {name}: {param.to_toml()}")
    return 0


def _studies(args: argparse.Namespace) -> int:
    import pandas as pd

    from hpo.results import Results

    urls = [args.storage] if args.storage else [
        f"sqlite:///{p.as_posix()}" for p in sorted(Path("studies").glob("*.db"))
    ]
    frames = []
    for url in urls:
        with Results(url) as results:
            frame = results.studies()
        frame.insert(0, "storage", url)
        frames.append(frame)
    if not frames:
        print("no study databases under studies/ (use --storage URL)")
        return 0
    _print_frame(pd.concat(frames, ignore_index=True), "studies")
    return 0


def _show(args: argparse.Namespace) -> int:
    return _show_table(args.storage or f"sqlite:///studies/{args.study}.db", args.study)


def _show_table(url: str, study: str) -> int:
    from rich.table import Table

    from hpo.results import Results

    with Results(url) as results:
        trials = results.trials(study)
        direction = results.studies().set_index("name").loc[study, "direction"]
    complete = trials[trials["state"] == "COMPLETE"]
    best = None
    if not complete.empty:
        best = complete.loc[complete["value"].idxmax() if direction == "maximize"
                            else complete["value"].idxmin(), "number"]
    params = [c for c in trials.columns if c not in
              {"number", "state", "n", "mean", "var", "std", "sem", "ci95_low", "ci95_high",
               "value"}]
    table = Table(title=f"study {study} ({direction} mean over seeds)")
    for column in ["#", "state", *params, "mean ± std", "95 % CI", "n", "best"]:
        table.add_column(column, justify="right" if column not in ("state",) else "left")
    for row in trials.itertuples(index=False):
        row = row._asdict()
        mean = "" if _missing(row["mean"]) else f"{row['mean']:.4f}"
        if mean and not _missing(row["std"]):
            mean += f" ± {row['std']:.4f}"
        ci = ("" if _missing(row["ci95_low"])
              else f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]")
        n = "" if _missing(row["n"]) else str(row["n"])
        table.add_row(str(row["number"]), row["state"], *(_fmt(row[p]) for p in params),
                      mean, ci, n, "★" if row["number"] == best else "")
    _console().print(table)
    return 0


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _fmt(value: object) -> str:
    if _missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _console():
    from rich.console import Console

    # Not a terminal (a pipe, a log): a wide fixed width so tables do not wrap.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _print_frame(frame, title: str) -> None:
    from rich.table import Table

    table = Table(title=title)
    for column in frame.columns:
        table.add_column(str(column))
    for row in frame.itertuples(index=False):
        table.add_row(*(_fmt(v) for v in row))
    _console().print(table)


_COMMANDS = {"run": _run, "check": _check, "studies": _studies, "show": _show}

if __name__ == "__main__":
    sys.exit(main())
