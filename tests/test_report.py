"""``hpo report``: the real command on a real study, opened in a real browser (headless Chromium);
published figures set beside a study, with their verdicts computed here with scipy."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from scipy import stats
from study_edits import copy_study, fail_seed
from test_cli import hpo
from test_results_fast import record

from hpo import HpoError, Results
from hpo.report import Published, load_published, reproduce, trial_table
from hpo.store import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class Tables(HTMLParser):
    """The text of every table cell, per table (class attribute → rows of cells)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("class", ""), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


UNDER_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
ERROR = "ValueError: <lambda> & co"  # a run's error quoting code: escaped in the HTML


@pytest.fixture(scope="module")
def report(small_study, tmp_path_factory):
    """The small study with seed 2 of trial 1 diverged (its error quoting code), and its report
    written by hpo report beside two published figures: one of a width of this study, one of
    a study not in the report."""
    here = tmp_path_factory.mktemp("report")
    url = copy_study(small_study[1], here)
    fail_seed(url, "small", 1, 2)
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        conn.execute("UPDATE hpo_runs SET error = ? WHERE state = 'FAIL'", (ERROR,))
    with Results(url) as r:
        width = int(r.trials("small").loc[0, "width"])
    (here / "published.toml").write_text(
        f'[[published]]\nstudy = "small"\nlabel = "width {width} in print"\nvalue = 0.5\n'
        f'configuration = {{ width = {width} }}\n\n'
        '[[published]]\nstudy = "elsewhere"\nlabel = "not here"\nvalue = 0.25\n')
    done = hpo("report", "small", "--storage", url, "--out", str(here / "report.html"),
               "--published", str(here / "published.toml"), cwd=here)
    assert done.returncode == 0, done.stderr
    return url, here / "report.html"


def columns(table: list[list[str]]) -> list[dict[str, str]]:
    header, *rows = table
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_the_html_stands_alone_and_its_table_is_results(report):
    url, path = report
    html = path.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    # No request to any other host: every src and href is embedded data or an anchor.
    assert all(ref.startswith(("data:image/png;base64,", "#"))
               for ref in re.findall(r'(?:src|href)="([^"]*)"', html))
    assert "&lt;lambda&gt; &amp; co" in html and "<lambda>" not in html  # escaped
    parser = Tables()
    parser.feed(html)
    rows = columns(parser.tables["results"])
    with Results(url) as r:
        trials = r.trials("small", sort="param")
        left_out = r.left_out_seeds("small")
        runs = r.runs("small")
    assert list(rows[0])[:3] == ["trial", "state", "width"]
    assert [int(row["trial"]) for row in rows] == trials["number"].tolist()
    for row, trial in zip(rows, trials.to_dict("records"), strict=True):
        mean, std = (float(x) for x in row["mean ± std"].split(" ± "))
        low, high = (float(x) for x in row["95 % CI"].strip("[]").split(", "))
        assert (mean, std, low, high) == pytest.approx(
            (trial["mean"], trial["std"], trial["ci95_low"], trial["ci95_high"]), abs=5e-5)
        assert int(row["n"]) == trial["n"]
        trained = runs.loc[runs["trial"] == trial["number"], "epochs"]
        assert row["epochs"] == (str(trained.max()) if trained.min() == trained.max()
                                 else f"{trained.min()}–{trained.max()}")
    assert {row["state"] for row in rows} == {"COMPLETE"}
    assert sum(row["vs best"] == "★ best" for row in rows) == 1
    left = columns(parser.tables["left-out"])
    assert [(int(x["trial"]), int(x["seed"]), x["state"], x["reason"]) for x in left] == list(
        left_out.itertuples(index=False, name=None)) == [(1, 2, "FAIL", ERROR)]
    protocol = dict(parser.tables["protocol"])
    assert protocol["repeats and seeds"].startswith("3 runs per trial, seeds 0–2")
    # The published figure of this study, with its verdict; the other listed as not reported.
    [published] = columns(parser.tables["reproduction"])
    trial0 = trials.set_index("number").loc[0]
    inside = trial0["ci95_low"] <= 0.5 <= trial0["ci95_high"]
    assert published["hpo trial"] == "0"
    assert published["verdict"].startswith("inside" if inside else "outside")
    [unreported] = columns(parser.tables["unreported"])
    assert (unreported["study"], unreported["value"]) == ("elsewhere", "0.2500")


@pytest.mark.skipif(not CHROMIUM and not UNDER_CI, reason="no chromium here")
def test_chromium_renders_the_report_with_every_figure(report, tmp_path):
    assert CHROMIUM, "CI must have Debian's chromium (.ci/run installs it)"
    _, path = report
    html = path.read_text(encoding="utf-8")
    n_images = html.count("<img ")
    assert n_images >= 3  # every trial's curves, the objective against width, the best trials

    def chromium(*args: str, page) -> subprocess.CompletedProcess:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             f"--user-data-dir={tmp_path / 'profile'}", *args, page.as_uri()],
            capture_output=True, text=True, timeout=120)

    shot = tmp_path / "report.png"
    chromium("--window-size=1200,2400", f"--screenshot={shot}", page=path)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.shape == (2400, 1200) and pixels.std() > 10  # drawn, not a blank page
    # The same page, with a probe that asks the browser to decode each image.
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", """<script>
Promise.all([...document.images].map(i => i.decode().then(
    () => [i.naturalWidth, i.naturalHeight], () => [0, 0])))
  .then(sizes => document.body.setAttribute("data-decoded", JSON.stringify(sizes)));
</script></body>"""), encoding="utf-8")
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", page=probe).stdout
    sizes = json.loads(re.search(r'data-decoded="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert len(sizes) == n_images and all(w > 100 and h > 100 for w, h in sizes)
    # The table the browser shows is the file's (whose numbers are Results', above).
    shown, written = Tables(), Tables()
    shown.feed(dom)
    written.feed(html)
    assert shown.tables["results"] == written.tables["results"]


def test_markdown_writes_its_pngs_beside_it(report, tmp_path):
    url, _ = report
    out = tmp_path / "report.md"
    done = hpo("report", "small", "--storage", url, "--format", "md", "--out", str(out),
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(images) >= 3
    for image in images:
        Image.open(tmp_path / image).verify()
    assert "| trial | state | width | mean ± std | 95 % CI | n | epochs | vs best |" in text


SETTINGS = {"study.objective": "val_accuracy", "study.reduce": "last"}
RUNS = {s: ("COMPLETE", None, {"val_accuracy": [0.5, v]})
        for s, v in enumerate([0.80, 0.86, 0.83, 0.91])}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('published') / 'p.db'}"
    store = Store.open(url, create=True)
    record(store, "q", "maximize", SETTINGS,
           {0: (4, "COMPLETE", RUNS),
            1: (8, "COMPLETE", {s: ("COMPLETE", None, {"val_accuracy": [0.5, v]})
                                for s, v in enumerate([0.6, 0.62, 0.61])}),
            # Pruned after its first epoch, at a partial mean above every final one.
            2: (16, "PRUNED", {s: ("PRUNED", None, {"val_accuracy": [v]})
                               for s, v in enumerate([0.97, 0.99])})})
    store.dispose()
    with Results(url) as r:
        yield r


def test_published_runs_are_tested_with_welch_and_a_mean_alone_against_the_ci(synthetic):
    x = np.array([0.80, 0.86, 0.83, 0.91])
    with_runs = reproduce(synthetic, "q", Published("q", "best", 0.785, n=10, std=0.137))
    expected = stats.ttest_ind_from_stats(x.mean(), x.std(ddof=1), 4, 0.785, 0.137, 10,
                                          equal_var=False)
    assert with_runs.trial == 0  # no configuration: the best trial
    assert with_runs.verdict == ("consistent (no evidence of a difference at α = 0.05): "
                                 "Welch's t-test against the 10 published runs, "
                                 f"p = {expected.pvalue:.3g}")
    far = reproduce(synthetic, "q", Published("q", "far", 0.5, n=10, std=0.01))
    assert far.verdict.startswith("differs")
    low, high = stats.t.interval(0.95, 3, loc=x.mean(), scale=stats.sem(x))
    inside = reproduce(synthetic, "q", Published("q", "w4", (low + high) / 2,
                                                 configuration={"width": 4}))
    assert inside.verdict.startswith("inside") and inside.ci95 == pytest.approx((low, high))
    outside = reproduce(synthetic, "q", Published("q", "w4", high + 0.001,
                                                  configuration={"width": 4}))
    assert outside.verdict.startswith("outside")
    width8 = reproduce(synthetic, "q", Published("q", "w8", 0.61, configuration={"width": 8}))
    assert width8.trial == 1


@pytest.mark.parametrize(("text", "expected"), [
    ('[[published]]\nstudy = "q"\nlabel = "x"\nvalue = 0.5\nstd = 0.1\n',
     r"published\[0\]: std = 0.1 needs n"),
    ('[[published]]\nstudy = "q"\nlabel = "x"\nvalu = 0.5\n',
     r"published\[0\]\.valu: unknown key"),
    ('[[published]]\nstudy = "q"\nlabel = "x"\nvalue = "0.9"\n',
     r"published\[0\]\.value = '0.9': expected a number"),
    ('[[published]]\nstudy = "q"\nlabel = "x"\nvalue = 0.9\nn = 0\n',
     r"\.n = 0: expected an integer >= 1"),
    ('[[publised]]\nstudy = "q"\nlabel = "x"\nvalue = 0.9\n', "publised: unknown key"),
])
def test_bad_published_entries_are_named(tmp_path, text, expected):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(HpoError, match=expected):
        load_published(path)


def test_the_shipped_published_file_reads():
    from pathlib import Path

    entries = load_published(Path(__file__).resolve().parents[1] / "studies" / "published.toml")
    q1 = next(p for p in entries if p.study == "mnist-q1-mse-sgd")
    assert (q1.value, q1.n, q1.std) == (0.785, 10, 0.137)
    assert len(entries) == 13


def test_a_pruned_trial_shows_its_partial_mean_and_is_ranked_after_the_complete(synthetic):
    trials = synthetic.trials("q", sort="value")
    assert trials["number"].tolist() == [0, 1, 2]  # its partial 0.98 is not a final mean
    rows = {row[0]: row for row in trial_table(trials, synthetic.compare_all("q"),
                                               synthetic.left_out_seeds("q"))[1]}
    assert rows["2"][1:4] == ["PRUNED", "16", "(0.9800 at epoch 1)"]
    assert rows["2"][4:] == ["", "", ""]  # no CI, no n, no verdict
    legend = trial_table(trials, synthetic.compare_all("q"), synthetic.left_out_seeds("q"))[2]
    assert any(line.startswith("(… at epoch e): a PRUNED trial's partial mean") for line in legend)
