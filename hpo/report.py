"""``hpo report``: one file a student can read and hand in, for one or several studies.

For each study: its protocol (dataset, model, training, repeats and seeds, objective, sampler,
pruner), the results table sorted by the swept parameters (mean ± std, 95 % CI, n, the verdict
against the best trial), the figures (every trial's per-seed curves with the mean ± 95 % CI
band, the objective against each swept parameter, the best trials' mean curves), the runs left
out of the statistics and why, the pruned trials, and the time the study took. With published
figures (:func:`load_published`, ``studies/published.toml``) also a reproduction table with a
verdict per row.

Every number shown comes from :class:`~hpo.results.Results` (the report and the API never
disagree); figures are :func:`hpo.plots.plot`'s. The HTML is one self-contained file (images
embedded as data URIs, no script, no request to another host), rendered by Jinja2 from
``hpo/templates/``; Markdown is a ``.md`` file and a folder of PNGs beside it.

Example:
    >>> from hpo import Results
    >>> with Results("sqlite:///studies/mnist-q6-width.db") as r:  # doctest: +SKIP
    ...     reports = [study_report(r, "mnist-q6-width")]
    >>> write_report(reports, "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import io
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
from scipy import stats as scipy_stats

from hpo.errors import HpoError, QueryError
from hpo.results import Results, left_out_lines, param_columns, versus_legend

FORMATS = ("html", "md")
FIGURES = ("curves", "param", "best")  # the figures a study's report may have, by name
BEST_CURVES = 5  # the best trials whose mean curves are drawn together


@dataclass(frozen=True)
class Figure:
    """One PNG of the report: ``name`` (a file stem), ``title`` (its caption) and the bytes."""

    name: str
    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI, for an ``<img src>`` that needs no other file."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass(frozen=True)
class Published:
    """A published figure to reproduce: the study (and, for a sweep, the configuration) it
    belongs to, the published mean, and n and std where the source printed its runs."""

    study: str
    label: str
    value: float
    configuration: Mapping[str, object] = field(default_factory=dict)
    n: int | None = None
    std: float | None = None
    source: str = ""


@dataclass
class Reproduction:
    """One published figure beside hpo's trial of the same configuration, with a verdict."""

    published: Published
    trial: int | None = None
    mean: float | None = None
    std: float | None = None
    n: int | None = None
    ci95: tuple[float, float] | None = None
    verdict: str = "not run"


@dataclass
class StudyReport:
    """What the report shows of one study, every value read through :class:`Results`."""

    name: str
    storage: str
    protocol: list[tuple[str, str]]
    columns: list[str]
    rows: list[list[str]]
    legend: list[str]
    figures: list[Figure]
    left_out: list[dict]
    pruned: list[dict]
    elapsed: list[tuple[str, str]]
    reproductions: list[Reproduction] = field(default_factory=list)


def load_published(path: str | Path) -> list[Published]:
    """The ``[[published]]`` entries of a TOML file (``studies/published.toml``): ``study``,
    ``label`` (text) and ``value`` (a number) required; ``configuration`` (a table: param =
    value), ``n`` (an integer >= 1), ``std`` (a number >= 0, with ``n``) and ``source``
    (text) optional. A bad entry raises :class:`~hpo.errors.HpoError` naming it."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HpoError(f"published file {str(path)!r}: {exc}") from None
    if set(raw) - {"published"}:
        raise HpoError(f"{path}: {sorted(set(raw) - {'published'})[0]}: unknown key; expected "
                       "[[published]] entries")
    entries = []
    for i, entry in enumerate(raw.get("published", [])):
        where = f"{path}: published[{i}]"
        unknown = sorted(set(entry) - set(_PUBLISHED_KEYS))
        if unknown:
            raise HpoError(f"{where}.{unknown[0]}: unknown key; expected one of "
                           + ", ".join(_PUBLISHED_KEYS))
        for key in ("study", "label", "value"):
            if key not in entry:
                raise HpoError(f"{where}: missing {key!r}")
        for key, (check, expected) in _PUBLISHED_KEYS.items():
            if key in entry and not check(entry[key]):
                raise HpoError(f"{where}.{key} = {entry[key]!r}: expected {expected}")
        if "std" in entry and "n" not in entry:
            raise HpoError(f"{where}: std = {entry['std']!r} needs n (the runs it is over)")
        entries.append(Published(**entry))
    return entries


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_PUBLISHED_KEYS = {
    "study": (lambda v: isinstance(v, str) and v != "", "a study name"),
    "label": (lambda v: isinstance(v, str), "text"),
    "value": (_number, "a number"),
    "configuration": (lambda v: isinstance(v, dict), "a table of param = value"),
    "n": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
          "an integer >= 1"),
    "std": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "source": (lambda v: isinstance(v, str), "text"),
}


def study_report(results: Results, study: str | int, published: Sequence[Published] = (),
                 alpha: float = 0.05) -> StudyReport:
    """Everything the report shows of ``study`` (figures drawn here)."""
    name = results.name(study)
    settings = results.sweep_settings(name)
    trials = results.trials(name, sort="param")
    params = param_columns(trials)
    runs = results.runs(name)
    # Results.left_out_seeds, from the runs read here rather than read again.
    left_out = runs.loc[runs["state"] != "COMPLETE", ["trial", "seed", "state", "error"]
                        ].reset_index(drop=True)
    trained = {int(t): _span(g["epochs"]) for t, g in runs.groupby("trial")}
    columns, rows, legend = trial_table(trials, results.compare_all(name, alpha=alpha), left_out,
                                        trained)
    pruned = trials[trials["state"] == "PRUNED"]
    return StudyReport(
        name=name,
        storage=results.store.url,
        protocol=protocol_rows(settings, results.direction(name)),
        columns=columns,
        rows=rows,
        legend=legend,
        figures=_figures(results, name, trials, params, trained=runs["epochs"].sum() > 0),
        left_out=[{k: cell(v) for k, v in r.items()} for r in left_out.to_dict("records")],
        pruned=[{"trial": str(r["number"]), "params": _params(r, params),
                 "epoch": cell(r["pruned_at"]), "mean": cell(r["pruned_mean"])}
                for r in pruned.to_dict("records")],
        elapsed=_elapsed(results.elapsed(name)),
        reproductions=[reproduce(results, name, p, trials) for p in published
                       if p.study == name],
    )


def trial_table(trials: pd.DataFrame, versus: pd.DataFrame, left_out: pd.DataFrame,
                epochs: Mapping[int, str] | None = None
                ) -> tuple[list[str], list[list[str]], list[str]]:
    """The results table of ``hpo show`` and the report: (columns, rows of cell text, legend
    lines), from :meth:`Results.trials` (in its order), :meth:`Results.compare_all` (the
    verdicts) and :meth:`Results.left_out_seeds`. A PRUNED trial shows its partial mean and
    the epoch the pruner stopped it at, in parentheses. ``epochs`` (trial → text) adds a
    column of the epochs each trial's runs trained."""
    params = param_columns(trials)
    # With several objectives: the others' means, and the Pareto front.
    others = ([c.removesuffix(".mean") for c in trials.columns if c.endswith(".mean")][1:]
              if "pareto" in trials.columns else [])
    best = versus.attrs["best"]
    verdicts = dict(zip(versus["trial"], versus["verdict"], strict=True))
    rows, pruned = [], False
    for row in trials.to_dict("records"):
        if not missing(row["mean"]):
            mean = f"{row['mean']:.4f}" + ("" if missing(row["std"]) else f" ± {row['std']:.4f}")
        elif not missing(row["pruned_mean"]):
            mean, pruned = f"({row['pruned_mean']:.4f} at epoch {row['pruned_at']})", True
        else:
            mean = ""
        ci = ("" if missing(row["ci95_low"])
              else f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]")
        rows.append([str(row["number"]), row["state"], *(cell(row[p]) for p in params), mean,
                     ci, "" if missing(row["n"]) else str(row["n"]),
                     *(_mean_std(row, metric) for metric in others),
                     *(["◆" if row["pareto"] else ""] if others else []),
                     *([epochs.get(row["number"], "")] if epochs is not None else []),
                     "★ best" if row["number"] == best else verdicts.get(row["number"], "")])
    complete = trials.loc[trials["state"] == "COMPLETE", "number"]
    legend = versus_legend(versus) + left_out_lines(left_out[left_out["trial"].isin(complete)])
    if others:
        legend.append("◆ Pareto front: COMPLETE trials that no other COMPLETE trial matches or "
                      "beats in every objective's mean while beating it in one (Optuna's "
                      "study.best_trials); ★ best and vs best are about the first objective")
    if pruned:
        legend.append("(… at epoch e): a PRUNED trial's partial mean, the value its pruner "
                      "judged at the epoch it stopped the trial (over the seeds training then: "
                      "all of them when they train together); not comparable with a final mean")
    columns = ["trial", "state", *params, "mean ± std", "95 % CI", "n",
               *(f"{metric} mean ± std" for metric in others), *(["Pareto"] if others else []),
               *(["epochs"] if epochs is not None else []), "vs best"]
    return columns, rows, legend


def _mean_std(row: Mapping[str, Any], metric: str) -> str:
    mean, std = row[f"{metric}.mean"], row[f"{metric}.std"]
    if missing(mean):
        return ""
    return f"{mean:.6g}" + ("" if missing(std) else f" ± {std:.4g}")


def reproduce(results: Results, study: str, published: Published,
              trials: pd.DataFrame | None = None) -> Reproduction:
    """``published`` beside the study's trial of its configuration (no configuration: the
    study's best trial, the only one of a single configuration), with a verdict.

    With the source's n and std: Welch's t-test of hpo's COMPLETE seeds against the published
    runs, from their summary statistics (``scipy.stats.ttest_ind_from_stats``,
    ``equal_var=False``), "consistent" when p > 0.05, else "differs". With a published mean
    alone: "inside" or "outside" hpo's 95 % CI of the mean.
    """
    trials = results.trials(study) if trials is None else trials
    match = trials[trials["state"] == "COMPLETE"]
    for key, value in published.configuration.items():
        if key not in match.columns:
            raise QueryError(f"published {published.label!r}: {key!r} is not a parameter of "
                             f"study {study!r}")
        match = match[match[key] == value]
    if match.empty:
        return Reproduction(published, verdict="no COMPLETE trial of this configuration")
    if len(match) > 1 and published.configuration:
        raise QueryError(f"published {published.label!r}: {len(match)} trials of study "
                         f"{study!r} match {dict(published.configuration)}; name every "
                         "parameter in its configuration")
    if len(match) > 1:  # no configuration: the published figure is the sweep's best
        match = match[match["number"] == results.best_trial(study)]
    row = match.iloc[0]
    if missing(row["mean"]) or missing(row["n"]):
        return Reproduction(published, trial=int(row["number"]),
                            verdict="not testable: hpo's mean is NaN (a diverged seed)")
    result = Reproduction(published, trial=int(row["number"]), mean=float(row["mean"]),
                          std=None if missing(row["std"]) else float(row["std"]),
                          n=int(row["n"]),
                          ci95=None if missing(row["ci95_low"])
                          else (float(row["ci95_low"]), float(row["ci95_high"])))
    if published.n and published.std is not None and result.std is not None:
        test = scipy_stats.ttest_ind_from_stats(result.mean, result.std, result.n,
                                                published.value, published.std, published.n,
                                                equal_var=False)
        outcome = ("consistent (no evidence of a difference at α = 0.05)"
                   if test.pvalue > 0.05 else "differs at α = 0.05")
        result.verdict = (f"{outcome}: Welch's t-test against the {published.n} published "
                          f"runs, p = {test.pvalue:.3g}")
    elif result.ci95 is not None:
        low, high = result.ci95
        inside = low <= published.value <= high
        result.verdict = (f"{'inside' if inside else 'outside'} hpo's 95 % CI "
                          f"[{low:.4f}, {high:.4f}]")
    else:
        result.verdict = "no CI (fewer than 2 COMPLETE seeds)"
    return result


def protocol_rows(settings: Mapping, direction: str) -> list[tuple[str, str]]:
    """The protocol as (what, how) rows, from the sweep settings stored with the study."""
    if not settings:
        return [("protocol", "not recorded (the study was not made by hpo run)")]
    data, model, train = (settings.get(k, {}) for k in ("data", "model", "train"))
    protocol, search = settings.get("protocol", {}), settings.get("search", {})
    repeats, seed = protocol.get("repeats"), protocol.get("seed", 0)
    limits = ", ".join(f"{k} = {data[k]}" for k in ("limit_train", "limit_test") if data.get(k))
    space = settings.get("search.space") or {}
    if isinstance(space, str):  # define-by-run: the function names the parameters
        space = {"suggested by": space}
    return [
        ("dataset", f"{data.get('dataset')}, validation = {data.get('validation')}"
         + (f", {limits}" if limits else "")),
        ("model", f"{model.get('builder')}" + "".join(
            f", {k} = {v}" for k, v in model.items() if k != "builder")),
        ("training", ", ".join(f"{k} = {v}" for k, v in train.items() if v not in (None, []))),
        ("repeats and seeds", f"{repeats} runs per trial, seeds {seed}–{seed + repeats - 1} "
         "(the same seeds in every trial)" if isinstance(repeats, int) else "not recorded"),
        ("objective", f"{direction} the mean over seeds of {settings.get('study.objective')} "
         f"({settings.get('study.reduce')} epoch per seed)"),
        ("search space", ", ".join(f"{k} = {v}" for k, v in space.items()) or "none"),
        ("sampler", f"{search.get('sampler')} (seed {search.get('seed')})"),
        ("pruner", str(search.get("pruner"))),
    ]


def write_report(reports: Sequence[StudyReport], out: str | Path, fmt: str = "html",
                 title: str | None = None, notes: str = "",
                 unreported: Sequence[Published] = ()) -> Path:
    """Render ``reports`` to ``out``: one self-contained HTML file, or Markdown with its PNGs
    in the folder ``<out stem>/`` beside it. ``notes`` (Markdown) is appended as it is;
    ``unreported`` (published figures of studies not in the report) are listed as such."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    if fmt not in FORMATS:
        raise QueryError.about("format", fmt, f"expected one of {', '.join(FORMATS)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The HTML template escapes every value (run errors quote code: "<lambda>"); Markdown is
    # written as it is, its table cells through _md_cell.
    env = Environment(loader=PackageLoader("hpo", "templates"),
                      autoescape=select_autoescape(["html.j2"], default_for_string=False),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    title = title or "hpo report: " + ", ".join(r.name for r in reports)
    if fmt == "md":
        folder = figures_folder(out)
        folder.mkdir(exist_ok=True)
        images = {}
        for report in reports:
            stem = file_stem(report.name)
            for name in FIGURES:  # an earlier report's (not another study's whose name goes on)
                (folder / f"{stem}-{name}.png").unlink(missing_ok=True)
            for figure in report.figures:
                image = folder / f"{stem}-{figure.name}.png"
                image.write_bytes(figure.png)
                images[report.name, figure.name] = quote(f"{folder.name}/{image.name}")
        text = env.get_template("report.md.j2").render(
            title=title, reports=reports, images=images, notes=notes, cell=_md_cell,
            unreported=unreported)
    else:
        text = env.get_template("report.html.j2").render(title=title, reports=reports,
                                                         notes=notes, unreported=unreported)
    out.write_text(text, encoding="utf-8")
    return out


def figures_folder(out: Path) -> Path:
    """Where a Markdown report's PNGs go: the folder named as the file without its suffix
    (``REPRODUCTION.md`` → ``REPRODUCTION/``), or ``<name>-figures/`` for a name without one."""
    return out.with_suffix("") if out.suffix else out.with_name(out.name + "-figures")


def file_stem(name: str) -> str:
    """A study name as a file name: anything but letters, digits, ``.``, ``_`` and ``-``
    becomes ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "study"


def _figures(results: Results, study: str, trials: pd.DataFrame, params: list[str],
             trained: bool) -> list[Figure]:
    import matplotlib.pyplot as plt

    from hpo.plots import plot

    if not trained:
        return []  # no run recorded an epoch yet (or not an hpo study)
    drawn = [("curves", "Every trial: each seed's curve, and the mean with its 95 % CI band",
              {"kind": "trials"})]
    if params and (trials["state"] == "COMPLETE").any():
        drawn.append(("param", "The objective against the swept parameters, mean ± 95 % CI",
                      {"kind": "param"}))
    ranked = trials[trials["state"] == "COMPLETE"].sort_values(
        "value", ascending=results.direction(study) == "minimize")
    best = ranked["number"].head(BEST_CURVES).tolist()
    if len(best) > 1:
        drawn.append(("best", f"The {len(best)} best trials' mean validation curves",
                      {"kind": "compare", "trials": best}))
    figures = []
    for name, title, kwargs in drawn:
        figure = plot(results, study, **kwargs)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=80)
        plt.close(figure)
        figures.append(Figure(name, title, buffer.getvalue()))
    return figures


def _span(epochs: pd.Series) -> str:
    """The epochs a trial's runs trained: ``10``, or ``37–52`` under early stopping."""
    low, high = int(epochs.min()), int(epochs.max())
    return str(low) if low == high else f"{low}–{high}"


def _elapsed(elapsed: pd.Series) -> list[tuple[str, str]]:
    if not elapsed["runs"]:
        return [("runs finished", "0")]
    return [
        ("runs finished", str(int(elapsed["runs"]))),
        ("first run started", f"{elapsed['first']:%Y-%m-%d %H:%M:%S} UTC"),
        ("last run finished", f"{elapsed['last']:%Y-%m-%d %H:%M:%S} UTC"),
        ("training time", f"{_duration(elapsed['busy_s'])} (when at least one run trained; "
         "runs trained together count once)"),
        ("first start to last end", _duration(elapsed["span_s"])),
    ]


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min {s:02d} s" if hours else f"{minutes} min {s:02d} s"


def _params(row: Mapping, params: list[str]) -> str:
    return ", ".join(f"{p}={cell(row[p])}" for p in params if not missing(row[p]))


def missing(value: object) -> bool:
    """None, NaN, NA or NaT (a list, tuple, dict or string never is)."""
    if isinstance(value, list | tuple | dict | str):
        return False
    return value is None or bool(pd.isna(value))


def cell(value: object) -> str:
    """A table cell: blank when missing, a float to 4 significant digits."""
    if missing(value):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _md_cell(value: object) -> str:
    """A Markdown table cell: pipes escaped, line breaks flattened."""
    return " ".join(str(value).split()).replace("|", "\\|")
