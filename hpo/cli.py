"""The ``hpo`` command: parse, call the public API, render. No logic of its own.

Bad input prints one line ``hpo: error: ...`` and exits 2; a failure at run time exits 1.
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
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

    def alpha_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--alpha", type=float, default=0.05, metavar="A",
                       help="significance level of the table's tests against the best trial "
                            "(Holm-corrected; default 0.05)")

    sweep_help = ("sweep file (TOML), or the name of a shipped protocol (hpo sweeps lists "
                  "them; a file of that name wins)")
    run = commands.add_parser("run", help="run (or continue) a sweep")
    run.add_argument("sweep", help=sweep_help)
    storage_arg(run, "the sweep's study.storage, else sqlite:///studies/<name>.db")
    run.add_argument("--n-trials", type=int, metavar="N",
                     help="finished trials the study should hold (default: search.n_trials "
                          "or the grid size)")
    run.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     dest="overrides", help="override a sweep-file key (value read as TOML)")
    run.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="worker processes on this machine sharing the study (default 1)")
    alpha_arg(run)

    worker = commands.add_parser(
        "worker", help="join a sweep's study (another process or machine); no table at the end")
    worker.add_argument("sweep", help=sweep_help)
    storage_arg(worker, "the sweep's study.storage, else sqlite:///studies/<name>.db")
    worker.add_argument("--n-trials", type=int, metavar="N",
                        help="trials the study should hold (default: as hpo run)")
    worker.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        dest="overrides")
    worker.add_argument("--label", default="",
                        help="prefix of this worker's progress lines (plain lines, no bar)")

    check = commands.add_parser("check", help="validate a sweep file and print its size")
    check.add_argument("sweep", help=sweep_help)
    check.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       dest="overrides")

    sweeps = commands.add_parser(
        "sweeps", help="list the shipped reference protocols (hpo run NAME runs one)")
    sweeps.add_argument("--copy", metavar="NAME",
                        help="write the shipped NAME.toml to this folder, to edit (never over "
                             "an existing file)")

    studies = commands.add_parser("studies", help="list the studies in a database")
    storage_arg(studies, "every studies/*.db")

    show = commands.add_parser(
        "show", help="table of a study's trials: mean ± std, 95%% CI, n, test against the best")
    show.add_argument("study", help="study name, or with --storage its number")
    storage_arg(show, "sqlite:///studies/<STUDY>.db")
    alpha_arg(show)
    show.add_argument("--sort", default="param", choices=["param", "value", "trial"],
                      help="row order: by the swept parameters (default), best value first, "
                           "or trial number")

    compare = commands.add_parser(
        "compare", help="is one trial better than another? two studies (each one's best trial, "
                        "or STUDY:TRIAL), or two trials of one study (STUDY A B)")
    compare.add_argument("targets", nargs="+", metavar="STUDY[:TRIAL]",
                         help="STUDY_A[:TRIAL] STUDY_B[:TRIAL], or STUDY A B")
    compare.add_argument("--metric", help="history key (default: the first study's objective)")
    storage_arg(compare, "sqlite:///studies/<STUDY_A>.db")
    compare.add_argument("--storage-b", metavar="URL",
                         help="STUDY_B's database (default: --storage if given, else "
                              "sqlite:///studies/<STUDY_B>.db)")

    enqueue = commands.add_parser(
        "enqueue", help="add a configuration for a study's next trial (not with a grid)")
    enqueue.add_argument("study")
    enqueue.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                         dest="values", required=True,
                         help="a searched parameter's value (read as TOML); the others sampled")
    storage_arg(enqueue, "sqlite:///studies/<STUDY>.db")

    report = commands.add_parser(
        "report", help="one self-contained HTML (or Markdown) file per set of studies: protocol, "
                       "results table, figures, runs left out, time")
    report.add_argument("studies", nargs="+", metavar="STUDY")
    storage_arg(report, "sqlite:///studies/<STUDY>.db, for each STUDY")
    report.add_argument("--out", type=Path,
                        help="default: studies/<STUDY>/report.html (.md with --format md); "
                             "several studies: studies/report.html")
    report.add_argument("--format", choices=["html", "md"], default="html",
                        help="html: one file, images embedded; md: Markdown and a folder of PNGs")
    report.add_argument("--published", type=Path, metavar="TOML",
                        help="published figures to set beside the results, with a verdict each "
                             "(e.g. studies/published.toml)")
    report.add_argument("--notes", type=Path, metavar="MD", help="Markdown appended at the end")
    report.add_argument("--title", help="the report's title")
    alpha_arg(report)

    plot = commands.add_parser("plot", help="draw a figure of a study to a PNG file")
    plot.add_argument("study")
    plot.add_argument("--kind", required=True,
                      choices=["curves", "trials", "param", "compare", "seeds", "pareto"])
    plot.add_argument("--trial", type=int, help="curves: the trial (default: the best)")
    plot.add_argument("--trials", help="compare: trial numbers, e.g. 0,3,5 (default: all)")
    plot.add_argument("--param", help="param: the parameter on the x axis")
    plot.add_argument("--metric", help="history key (default: the study's objective)")
    plot.add_argument("--error", action="store_true", help="plot 1 - accuracy")
    plot.add_argument("--out", type=Path, help="PNG file (default: studies/<STUDY>/<kind>.png)")
    storage_arg(plot, "sqlite:///studies/<STUDY>.db")

    export = commands.add_parser(
        "export", help="write trials, runs or epochs to a file, or the kept models to a folder")
    export.add_argument("study")
    export.add_argument("--what", required=True, choices=["trials", "runs", "epochs", "models"])
    export.add_argument("--format", choices=["csv", "parquet", "json"],
                        help="the file format (trials, runs, epochs)")
    export.add_argument("--out", required=True, type=Path,
                        help="the file, or the folder for models (.keras files)")
    storage_arg(export, "sqlite:///studies/<STUDY>.db")

    dashboard = commands.add_parser(
        "dashboard", help="optuna-dashboard on a study's database (notes and mean ± CI figures)")
    dashboard.add_argument("study", nargs="?", help="study to write the note and figures for "
                           "(required without --storage; omitted: every study of that database)")
    storage_arg(dashboard, "sqlite:///studies/<STUDY>.db")
    dashboard.add_argument("--host", default="127.0.0.1",
                           help="address to bind (default: 127.0.0.1, this machine only)")
    dashboard.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hpo`` command with ``argv`` (default: ``sys.argv``); return its exit code
    (0, 1 for a failure at run time, 2 for bad input; an error is one line on stderr)."""
    args = _parser().parse_args(argv)
    if args.command in ("run", "worker"):
        # A scheduler's SIGTERM stops a sweep as Ctrl-C does: the run in flight is marked
        # interrupted and the trial left for the next hpo run to resume.
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = _COMMANDS[args.command](args)
    except HpoError as exc:
        if args.debug:
            raise
        print(f"hpo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("hpo: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # anything else (a lost database, a bug): one line unless --debug
        if args.debug:
            raise
        reason = " ".join(str(exc).split())[:500]
        print(f"hpo: error: {type(exc).__name__}: {reason} (--debug shows the traceback)",
              file=sys.stderr)
        return 1
    return code or 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sweep_args(args: argparse.Namespace):
    sweep = _load_sweep(args)
    if args.n_trials is not None and args.n_trials < 1:
        raise HpoError(f"--n-trials = {args.n_trials}: expected an integer >= 1")
    return sweep


def _load_sweep(args: argparse.Namespace):
    """The sweep ``args.sweep`` names: a file, else a shipped protocol's name. ``args.sweep``
    becomes that file's path (what ``hpo run --jobs`` gives its workers, ``hpo check`` prints)."""
    from hpo.shipped import locate
    from hpo.sweep import load_sweep

    args.sweep = locate(args.sweep)
    return load_sweep(args.sweep, args.overrides)


def _run(args: argparse.Namespace) -> int:
    sweep = _sweep_args(args)
    if args.jobs < 1:
        raise HpoError(f"--jobs = {args.jobs}: expected an integer >= 1")
    _check_alpha(args.alpha)  # before the sweep runs, not after
    url = args.storage or sweep.storage_url
    if args.jobs == 1:
        code = _work(args, sweep)
    else:
        code = _spawn_workers(args, sweep, url)
    print(f"study {sweep.study.name} in {url}")
    table = _show_table(url, sweep.study.name, args.alpha)
    return code or table


def _worker(args: argparse.Namespace) -> int:
    return _work(args, _sweep_args(args))


def _work(args: argparse.Namespace, sweep) -> int:
    import optuna

    from hpo import progress
    from hpo.runner import run_sweep
    from hpo.training.backend import import_keras_quietly

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import_keras_quietly()
    shown = (progress.LineProgress(label=args.label) if getattr(args, "label", "")
             else progress.for_stream())
    run_sweep(sweep, storage=args.storage, n_trials=args.n_trials, progress=shown)
    return 0


def _spawn_workers(args: argparse.Namespace, sweep, url: str) -> int:
    """``hpo run --jobs N``: check the sweep and create its study here, then N ``hpo worker``
    processes share it; exit 2 if one refused its input, 1 if one failed otherwise."""
    import subprocess

    from hpo.runner import PACK_TRIALS, check_builder, load_data, prepare_study

    check_builder(sweep, load_data(sweep))
    prepare_study(sweep, url)
    debug = ["--debug"] if args.debug else []
    command = [sys.executable, "-m", "hpo", *debug, "worker", str(args.sweep), "--storage", url]
    if args.n_trials is not None:
        command += ["--n-trials", str(args.n_trials)]
    for override in args.overrides:
        command += ["--set", override]
    if sweep.protocol.pack_trials is True and sweep.search.pruner == "none":
        # Each worker asks its share of the trials, not all of them, so that all N train.
        share = -(-(args.n_trials or sweep.n_trials) // args.jobs)
        command += ["--set", f"protocol.pack_trials={max(1, min(share, PACK_TRIALS))}"]
    workers = [subprocess.Popen([*command, "--label", f"w{i + 1}"]) for i in range(args.jobs)]
    try:
        codes = [w.wait() for w in workers]
    except KeyboardInterrupt:  # Ctrl-C reached every worker too; SIGTERM only this process
        for w in workers:
            w.send_signal(signal.SIGINT)
        for w in workers:
            w.wait()
        raise
    failed = [code for code in codes if code]  # a worker killed by a signal has a negative code
    return 0 if not failed else 2 if 2 in failed else 1


def _check(args: argparse.Namespace) -> int:
    from hpo.config import RUN_MEASURES
    from hpo.space import FunctionSpace

    sweep = _load_sweep(args)
    trials, repeats, epochs = sweep.n_trials, sweep.protocol.repeats, sweep.train.epochs
    url = sweep.storage_url  # refuses a study name unfit for the default file before "ok"
    print(f"{args.sweep}: ok")
    aims = "; ".join(f"{o.direction} {o.metric}"
                     + ("" if o.metric in RUN_MEASURES else f" ({o.reduce} epoch per seed)")
                     for o in sweep.study.objectives)
    print(f"  study {sweep.study.name!r} in {url}, {aims}")
    print(f"  {trials} trials × {repeats} repeats × {epochs} epochs = {trials * repeats} runs, "
          f"{trials * repeats * epochs} epochs; sampler {sweep.search.sampler}")
    for name, param in sweep.search.space.items():
        print(f"  {name}: {param.to_toml()}")
    if isinstance(sweep.search.space, FunctionSpace):
        print(f"  parameters suggested by {sweep.search.space.path} (define-by-run)")
    _warn_pruner(sweep)
    return 0


def _warn_pruner(sweep) -> None:
    from hpo.study import pruner_warning

    warning = pruner_warning(sweep)
    if warning:
        print(f"hpo: warning: {warning}", file=sys.stderr)


def _sweeps(args: argparse.Namespace) -> int:
    from hpo import shipped

    if args.copy is not None:
        path = shipped.copy(args.copy)
        print(f"wrote {path}; edit it, then: hpo run {path}")
        return 0
    protocols = shipped.protocols()
    width = max(len(p.name) for p in protocols)
    for p in protocols:
        print(f"{p.name:<{width}}  {p.summary}".rstrip())
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


def _default_url(args: argparse.Namespace) -> str:
    return args.storage or f"sqlite:///studies/{args.study}.db"


def _show(args: argparse.Namespace) -> int:
    _check_alpha(args.alpha)
    return _show_table(_default_url(args), args.study, args.alpha, args.sort)


def _check_alpha(alpha: float) -> None:
    from hpo.stats import check_alpha

    try:
        check_alpha(alpha)
    except ValueError:
        raise HpoError(f"--alpha = {alpha:g}: expected a number between 0 and 1 (exclusive)"
                       ) from None


def _compare(args: argparse.Namespace) -> int:
    targets = args.targets
    if len(targets) == 3 and targets[1].isdigit() and targets[2].isdigit():
        return _compare_trials(args, targets[0], int(targets[1]), int(targets[2]))
    if len(targets) != 2:
        raise HpoError(f"hpo compare {' '.join(targets)}: expected STUDY_A[:TRIAL] "
                       "STUDY_B[:TRIAL], or STUDY A B (two trial numbers of one study)")
    return _compare_studies(args, *(_study_trial(t) for t in targets))


def _study_trial(target: str) -> tuple[str, int | None]:
    """``NAME`` or ``NAME:TRIAL`` (a study name may itself contain colons)."""
    name, _, trial = target.rpartition(":")
    if name and trial.isdigit():
        return name, int(trial)
    return target, None


def _compare_studies(args: argparse.Namespace, a: tuple[str, int | None],
                     b: tuple[str, int | None]) -> int:
    from rich.table import Table

    from hpo.results import Results

    url_a = args.storage or f"sqlite:///studies/{a[0]}.db"
    url_b = args.storage_b or args.storage or f"sqlite:///studies/{b[0]}.db"
    with Results(url_a) as results_a, Results(url_b) as results_b:
        r = results_a.compare_studies(a[0], b[0], trial_a=a[1], trial_b=b[1],
                                      metric=args.metric, other=results_b)
    sides = [f"{r['study_a']}:{r['trial_a']}", f"{r['study_b']}:{r['trial_b']}"]
    table = Table(title=f"{sides[0]} vs {sides[1]}: {r['metric']} per seed")
    for column in ("", *sides):
        table.add_column(column, justify="right")
    for key in ("n", "mean", "std", "ci95_low", "ci95_high", "reduce"):
        table.add_row(key, _fmt(r[f"{key}_a"]), _fmt(r[f"{key}_b"]))
    _console().print(table)
    chosen = [f"{side} is {'the best trial' if trial is None else 'named'}"
              for side, (_, trial) in zip(sides, (a, b), strict=True)]
    sample = "each trial's COMPLETE runs, one value per seed; " + "; ".join(chosen)
    if r["test"] == "paired":
        test = (f"paired t-test by seed on the {r['n']} seeds both completed "
                "(scipy.stats.ttest_rel)")
    else:
        test = ("Welch's t-test, fewer than 2 seeds in common (scipy.stats.ttest_ind, "
                "equal_var=False)")
    lines = [f"sample: {sample}", f"test: {test}"]
    if r["reduce_a"] != r["reduce_b"]:
        lines.append(f"note: {sides[0]} takes the {r['reduce_a']} epoch of each seed and "
                     f"{sides[1]} the {r['reduce_b']} epoch (each as its own study reduces)")
    if r["untestable"]:
        lines.append(f"difference {sides[0]} − {sides[1]} = {r['diff']:+.4f}; not testable: "
                     f"{r['untestable']}")
    else:
        lines.append(f"difference {sides[0]} − {sides[1]} = {r['diff']:+.4f}, 95 % CI "
                     f"[{r['diff_ci95_low']:+.4f}, {r['diff_ci95_high']:+.4f}], "
                     f"p = {r['p']:.4g} (two-sided); {r['effect']} = {r['effect_size']:.3f}")
    print("\n".join(lines))
    return 0


def _compare_trials(args: argparse.Namespace, study: str, a: int, b: int) -> int:
    from rich.table import Table

    from hpo.results import Results, left_out_lines

    with Results(args.storage or f"sqlite:///studies/{study}.db") as results:
        name = results.name(study)
        r = results.compare(name, a, b, args.metric)
        metric = args.metric or results.sweep_settings(name).get("study.objective")
        left_out = results.left_out_seeds(name, [a, b])
    table = Table(title=f"trial {a} vs trial {b}: {metric} per seed")
    for column in ("", f"trial {a}", f"trial {b}"):
        table.add_column(column, justify="right")
    for key in ("n", "mean", "std", "ci95_low", "ci95_high"):
        table.add_row(key, _fmt(r[f"{key}_a"]), _fmt(r[f"{key}_b"]))
    _console().print(table)
    lines = [
        "sample: each trial's COMPLETE runs (as in its own statistics), one value per seed",
        f"difference of means {r['difference']:+.4f}; Welch's t = {r['welch_t']:.3f}, "
        f"p = {r['welch_p']:.4g}; Cohen's d = {r['cohens_d']:.3f}",
    ]
    if "paired_p" in r and not _missing(r.get("paired_p")):
        lines.append(
            f"paired by seed (n = {int(r['paired_n'])}): "
            f"mean difference {r['mean_difference']:+.4f}, "
            f"95 % CI [{r['difference_ci95_low']:+.4f}, {r['difference_ci95_high']:+.4f}], "
            f"t = {r['paired_t']:.3f}, p = {r['paired_p']:.4g}, d_z = {r['cohens_dz']:.3f}"
        )
    lines += left_out_lines(left_out)
    print("\n".join(lines))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from hpo.plots import plot
    from hpo.results import Results

    trials = [int(t) for t in args.trials.split(",")] if args.trials else None
    with Results(_default_url(args)) as results, _flags("kind", "trial", "trials", "param"):
        name = results.name(args.study)
        figure = plot(results, name, args.kind, trial=args.trial, trials=trials,
                      param=args.param, metric=args.metric, error=args.error)
    out = args.out or Path("studies") / name / f"{args.kind}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


def _enqueue(args: argparse.Namespace) -> int:
    from hpo.store import Store
    from hpo.study import enqueue_into
    from hpo.sweep import toml_value

    values = {}
    for item in args.values:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise HpoError(f"--set {item!r}: expected PARAM=VALUE, e.g. width=64")
        values[name.strip()] = toml_value(text.strip())
    store = Store.open(_default_url(args))
    try:
        point, added = enqueue_into(store, args.study, values)
    finally:
        store.dispose()
    shown = ", ".join(f"{k}={v}" for k, v in point.items())
    if added:
        print(f"enqueued {shown}: the next trial asked runs it (hpo run or hpo worker, while "
              "the study holds fewer trials than its target; raise it with --n-trials)")
    else:
        print(f"{shown}: an equal configuration is already a trial of {args.study}; nothing "
              "enqueued")
    return 0


def _report(args: argparse.Namespace) -> int:
    from hpo.report import load_published, study_report, write_report
    from hpo.results import Results

    _check_alpha(args.alpha)
    published = load_published(args.published) if args.published else []
    notes = ""
    if args.notes:
        try:
            notes = args.notes.read_text(encoding="utf-8")
        except OSError as exc:
            raise HpoError(f"--notes {str(args.notes)!r}: {exc.strerror}") from None
    reports = []
    for study in dict.fromkeys(args.studies):  # a study named twice is reported once
        with Results(args.storage or f"sqlite:///studies/{study}.db") as results:
            reports.append(study_report(results, study, published, args.alpha))
    names = {r.name for r in reports}
    if args.out:
        out = args.out
    elif len(reports) == 1:
        out = Path("studies") / reports[0].name / f"report.{args.format}"
    else:
        out = Path("studies") / f"report.{args.format}"
    written = write_report(reports, out, args.format, args.title, notes,
                           unreported=[p for p in published if p.study not in names])
    print(f"wrote {written}")
    return 0


@contextlib.contextmanager
def _flags(*arguments: str, **renamed: str):
    """A library error about one of ``arguments`` (or ``renamed``: argument=flag name) names
    its command-line flag instead."""
    from hpo.errors import QueryError

    flags = {**{argument: argument for argument in arguments}, **renamed}
    try:
        yield
    except QueryError as exc:
        if exc.argument not in flags:
            raise
        raise exc.naming(f"--{flags[exc.argument]}") from None


def _export(args: argparse.Namespace) -> int:
    from hpo.errors import QueryError
    from hpo.results import Results

    with Results(_default_url(args)) as results, _flags("what", fmt="format"):
        if args.what == "models":
            frame = results.export_models(args.study, str(args.out))
            print(f"wrote {len(frame)} kept models (.keras) to {args.out}")
            return 0
        if args.format is None:
            raise QueryError("--format: missing; expected csv, parquet or json for "
                             f"--what {args.what}")
        frame = results.export(args.study, args.what, args.format, str(args.out))
    print(f"wrote {len(frame)} rows of {args.what} to {args.out}")
    return 0


def _show_table(url: str, study: str, alpha: float = 0.05, sort: str = "param") -> int:
    from rich.table import Table

    from hpo.report import trial_table
    from hpo.results import Results

    with Results(url) as results:
        name = results.name(study)
        trials = results.trials(name, sort=sort)
        versus = results.compare_all(name, alpha=alpha)
        left_out = results.left_out_seeds(name)
        objectives = results.objectives(name)
    columns, rows, legend = trial_table(trials, versus, left_out)
    aims = ", ".join(f"{direction} {metric}" for metric, direction in objectives)
    title = (f"study {name} ({versus.attrs['direction']} mean over seeds)" if len(objectives) == 1
             else f"study {name} ({aims}: means over seeds)")
    table = Table(title=title)
    for column in ["#", *columns[1:]]:
        table.add_column(column, justify="left" if column in ("state", "vs best") else "right")
    for row in rows:
        table.add_row(*row)
    _console().print(table)
    print("\n".join(legend))
    return 0


def _missing(value: object) -> bool:
    from hpo.report import missing

    return missing(value)


def _fmt(value: object) -> str:
    from hpo.report import cell

    return cell(value)


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


def _dashboard(args: argparse.Namespace) -> int:
    from hpo.dashboard import serve

    if not args.study and not args.storage:
        raise HpoError("hpo dashboard: give a STUDY or --storage URL")
    serve(_default_url(args), args.study, host=args.host, port=args.port)
    return 0


_COMMANDS = {"run": _run, "worker": _worker, "check": _check, "sweeps": _sweeps,
             "studies": _studies, "show": _show, "compare": _compare, "enqueue": _enqueue,
             "report": _report, "plot": _plot, "export": _export, "dashboard": _dashboard}

if __name__ == "__main__":
    sys.exit(main())
