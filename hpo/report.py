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
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from hpo.errors import HpoError, QueryError
from hpo.results import Results, left_out_lines, param_columns, versus_legend

FORMATS = ("html", "md")
BEST_CURVES = 5  # the best trials whose mean curves are drawn together


@dataclass(frozen=True)
class Figure:
    """One PNG of the report: ``name`` (a file stem), ``title`` (its caption) and the bytes."""

    name: str
    title: str
    png: bytes

    @property
    def data_uri(self) -> str:
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
    ``label``, ``value`` required; ``configuration`` (param = value), ``n``, ``std``,
    ``source`` optional. A bad entry raises :class:`~hpo.errors.HpoError` naming it."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise HpoError(f"published file {str(path)!r}: {exc}") from None
    entries = []
    allowed = {"study", "label", "value", "configuration", "n", "std", "source"}
    for i, entry in enumerate(raw.get("published", [])):
        where = f"{path}: published[{i}]"
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise HpoError(f"{where}.{unknown[0]}: unknown key; expected one of "
                           + ", ".join(sorted(allowed)))
        for key in ("study", "label", "value"):
            if key not in entry:
                raise HpoError(f"{where}: missing {key!r}")
        if entry.get("std") is not None and not entry.get("n"):
            raise HpoError(f"{where}: std = {entry['std']!r} needs n (the runs it is over)")
        entries.append(Published(**entry))
    return entries


def study_report(results: Results, study: str | int, published: Sequence[Published] = (),
                 alpha: float = 0.05) -> StudyReport:
    """Everything the report shows of ``study`` (figures drawn here)."""
    name = results.name(study)
    settings = results.sweep_settings(name)
    trials = results.trials(name, sort="param")
    params = param_columns(trials)
    versus = results.compare_all(name, alpha=alpha)
    verdicts = dict(zip(versus["trial"], versus["verdict"], strict=True))
    best = versus.attrs["best"]
    columns = ["trial", "state", *params, "mean ± std", "95 % CI", "n", "vs best"]
    rows = []
    for row in trials.to_dict("records"):
        if not missing(row["mean"]):
            mean = f"{row['mean']:.4f}" + ("" if missing(row["std"]) else f" ± {row['std']:.4f}")
        elif not missing(row["pruned_mean"]):
            mean = f"({row['pruned_mean']:.4f} at epoch {row['pruned_at']})"
        else:
            mean = ""
        ci = ("" if missing(row["ci95_low"])
              else f"[{row['ci95_low']:.4f}, {row['ci95_high']:.4f}]")
        rows.append([str(row["number"]), row["state"], *(cell(row[p]) for p in params), mean,
                     ci, "" if missing(row["n"]) else str(row["n"]),
                     "★ best" if row["number"] == best else verdicts.get(row["number"], "")])
    complete = trials.loc[trials["state"] == "COMPLETE", "number"].tolist()
    left_out = results.left_out_seeds(name)
    pruned = trials[trials["state"] == "PRUNED"]
    return StudyReport(
        name=name,
        storage=results.store.url,
        protocol=protocol_rows(settings, results.direction(name)),
        columns=columns,
        rows=rows,
        legend=versus_legend(versus)
        + left_out_lines(left_out[left_out["trial"].isin(complete)])
        + (["(… at epoch e): a PRUNED trial's mean over its seeds at the epoch the pruner "
            "stopped it; partial, not comparable with a final mean"] if len(pruned) else []),
        figures=_figures(results, name, trials, params),
        left_out=[{k: cell(v) for k, v in r.items()} for r in left_out.to_dict("records")],
        pruned=[{"trial": str(r["number"]), "params": _params(r, params),
                 "epoch": str(r["pruned_at"]), "mean": cell(r["pruned_mean"])}
                for r in pruned.to_dict("records")],
        elapsed=_elapsed(results.elapsed(name)),
        reproductions=[reproduce(results, name, p, trials) for p in published
                       if p.study == name],
    )


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
    result = Reproduction(published, trial=int(row["number"]), mean=float(row["mean"]),
                          std=None if missing(row["std"]) else float(row["std"]),
                          n=int(row["n"]),
                          ci95=None if missing(row["ci95_low"])
                          else (float(row["ci95_low"]), float(row["ci95_high"])))
    if published.n and published.std is not None and result.std is not None:
        test = scipy_stats.ttest_ind_from_stats(result.mean, result.std, result.n,
                                                published.value, published.std, published.n,
                                                equal_var=False)
        outcome = "consistent" if test.pvalue > 0.05 else "differs"
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
    env = Environment(loader=PackageLoader("hpo", "templates"),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True)
    title = title or "hpo report: " + ", ".join(r.name for r in reports)
    if fmt == "md":
        folder = out.with_suffix("")
        folder.mkdir(exist_ok=True)
        for report in reports:
            for figure in report.figures:
                (folder / f"{report.name}-{figure.name}.png").write_bytes(figure.png)
        text = env.get_template("report.md.j2").render(
            title=title, reports=reports, folder=folder.name, notes=notes, cell=_md_cell,
            unreported=unreported)
    else:
        text = env.get_template("report.html.j2").render(title=title, reports=reports,
                                                         notes=notes, unreported=unreported)
    out.write_text(text, encoding="utf-8")
    return out


def _figures(results: Results, study: str, trials: pd.DataFrame,
             params: list[str]) -> list[Figure]:
    from hpo.plots import plot

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
        import matplotlib.pyplot as plt

        plt.close(figure)
        figures.append(Figure(name, title, buffer.getvalue()))
    return figures


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
