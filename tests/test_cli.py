"""The hpo command, run as a user runs it: a real process on a real sweep file."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from study_edits import copy_study, fail_seed

from hpo import Results


def hpo(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def table_rows(out: str) -> list[dict[str, str]]:
    """The rows of the rich table in ``out`` (a pipe: no colours), as column → cell text."""
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    names = [cell.strip() for cell in header.strip("┃").split("┃")]
    return [dict(zip(names, (c.strip() for c in line.strip("│").split("│")), strict=True))
            for line in lines if line.startswith("│")]


def expected_verdicts(url: str, study: str, alpha: float) -> dict[int, str]:
    """The "vs best" column recomputed from ``Results.seed_table`` with scipy and statsmodels:
    the best by mean (maximize), paired t-tests on the common seeds, Holm over all of them."""
    with Results(url) as r:
        table = r.seed_table(study)
    values = {t: g.set_index("seed")["value"] for t, g in table.groupby("trial")}
    best = max(values, key=lambda t: values[t].mean())
    others = sorted(t for t in values if t != best)
    tests = []
    for t in others:
        common = sorted(set(values[t].index) & set(values[best].index))
        x, y = values[t][common].to_numpy(), values[best][common].to_numpy()
        tests.append(((x - y).mean(), stats.ttest_rel(x, y).pvalue))
    reject, p_holm, _, _ = multipletests([p for _, p in tests], alpha=alpha, method="holm")
    verdicts = {best: "★ best"}
    for t, (diff, _), p, rejected in zip(others, tests, p_holm, reject, strict=True):
        word = ("worse" if diff < 0 else "better") if rejected else "not distinguishable"
        verdicts[int(t)] = f"{word} (p_holm={p:.2g})"
    return verdicts


def test_run_then_show_studies_and_check(tmp_path, sweep_file):
    result = hpo("run", str(sweep_file), "--set", "protocol.repeats=3", "--set", "train.epochs=1",
                 "--set", "search.space.width=[2, 4, 16]", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Plain progress lines (stdout is a pipe), then the results table.
    assert "trial 1/3" in out and "(3/3 seeds)" in out and "ETA" in out
    assert "study small" in out and "★ best" in out and "95 % CI" in out
    assert (tmp_path / "studies" / "small.db").exists()  # the default storage
    url = f"sqlite:///{tmp_path / 'studies' / 'small.db'}"

    rows = table_rows(out)
    assert [row["state"] for row in rows] == ["COMPLETE"] * 3 and "±" in rows[0]["mean ± std"]
    assert [int(row["width"]) for row in rows] == [2, 4, 16]  # sorted by the swept parameter
    # The verdicts are the tests scipy and statsmodels give on the seed table: two comparisons
    # with the best, Holm-corrected together.
    assert {int(row["#"]): row["vs best"] for row in rows} == expected_verdicts(url, "small",
                                                                                 0.05)
    assert "(scipy.stats.ttest_rel): 2 trials; Holm's correction over the 2 tested" in out
    assert "α = 0.05" in out and "Welch" not in out

    # hpo show (default storage: studies/small.db) with --alpha: it moves the line between
    # "worse" and "not distinguishable".
    with Results(url) as r:
        versus = r.compare_all("small")
    closest = versus.loc[versus["p_holm"].idxmin()]
    assert closest["p_holm"] < 0.5, "the widths should differ on this data"
    for alpha, word in ((closest["p_holm"] / 2, "not distinguishable"),
                        (min(closest["p_holm"] * 1.5, 0.99), "worse")):
        shown_at = hpo("show", "small", "--alpha", str(alpha), cwd=tmp_path)
        assert shown_at.returncode == 0, shown_at.stderr
        verdicts = {int(row["#"]): row["vs best"] for row in table_rows(shown_at.stdout)}
        assert verdicts == expected_verdicts(url, "small", alpha)
        assert verdicts[int(closest["trial"])].startswith(word)
        assert f"α = {alpha:g}" in shown_at.stdout

    # A study number works with --storage, and shows the same table as the name.
    with Results(url) as r:
        number = r.store.optuna.get_study_id_from_name("small")
    by_number = hpo("show", str(number), "--storage", "sqlite:///studies/small.db", cwd=tmp_path)
    assert by_number.returncode == 0, by_number.stderr
    assert by_number.stdout.lstrip() == out[out.index("study small (maximize"):]  # run's table

    listed = hpo("studies", cwd=tmp_path)
    assert listed.returncode == 0 and "small" in listed.stdout and "maximize" in listed.stdout

    # A median pruner that judges from epoch 3 cannot stop a 2-epoch run early: a warning.
    checked = hpo("check", str(sweep_file), "--set", "search.pruner=median", cwd=tmp_path)
    assert checked.returncode == 0
    assert "2 trials × 3 repeats × 2 epochs = 6 runs, 12 epochs" in checked.stdout
    assert checked.stderr.startswith("hpo: warning: search.pruner = 'median' judges a trial from "
                                     "epoch 3 on and train.epochs = 2")


def test_show_an_unknown_study_exits_2(tmp_path):
    result = hpo("show", "nothing", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("hpo: error: storage 'sqlite:///studies/nothing.db'")
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["studies"], ["show"]])
def test_help_everywhere(tmp_path, command):
    result = hpo(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: hpo" in result.stdout


def test_compare_plot_and_export_commands(small_study, tmp_path):
    _, url = small_study
    compared = hpo("compare", "small", "0", "1", "--storage", url, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert "Welch's t" in compared.stdout and "paired by seed (n = 3)" in compared.stdout
    assert "left out" not in compared.stdout  # every run completed
    plotted = hpo("plot", "small", "--kind", "param", "--storage", url, cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "studies" / "small" / "param.png").stat().st_size > 10_000
    out = tmp_path / "runs.csv"
    exported = hpo("export", "small", "--what", "runs", "--format", "csv", "--out", str(out),
                   "--storage", url, cwd=tmp_path)
    assert exported.returncode == 0 and "wrote 6 rows of runs" in exported.stdout
    shown = hpo("show", "small", "--storage", url, cwd=tmp_path)
    verdicts = {int(row["#"]): row["vs best"] for row in table_rows(shown.stdout)}
    assert verdicts == expected_verdicts(url, "small", 0.05)
    assert "(scipy.stats.ttest_rel): 1 trial; Holm's correction over the 1 tested" in shown.stdout
    bad = hpo("plot", "small", "--kind", "param", "--param", "depth", "--storage", url,
              cwd=tmp_path)
    assert bad.returncode == 2 and "--param 'depth': not a parameter" in bad.stderr


def test_compare_and_show_name_the_seeds_they_left_out(small_study, tmp_path):
    _, url = small_study
    copy = copy_study(url, tmp_path)
    with Results(copy) as r:
        worse = int(r.trials("small").sort_values("value").iloc[0]["number"])
    fail_seed(copy, "small", worse, 1)  # seed 1 of that trial: FAIL, last epoch NaN
    compared = hpo("compare", "small", str(1 - worse), str(worse), "--storage", copy,
                   cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    n_row = next(row for row in table_rows(compared.stdout) if row[""] == "n")
    assert (n_row[f"trial {1 - worse}"], n_row[f"trial {worse}"]) == ("3", "2")
    assert "paired by seed (n = 2)" in compared.stdout
    line = f"left out of the statistics (runs not COMPLETE): trial {worse}: seed 1 (FAIL)"
    assert line in compared.stdout.splitlines()
    shown = hpo("show", "small", "--storage", copy, cwd=tmp_path)
    rows = {int(row["#"]): row for row in table_rows(shown.stdout)}
    assert rows[worse]["n"] == "2" and rows[1 - worse]["n"] == "3"  # compare's n is show's n
    assert {t: row["vs best"] for t, row in rows.items()} == expected_verdicts(copy, "small",
                                                                               0.05)
    assert line in shown.stdout.splitlines()


def test_an_alpha_outside_zero_one_exits_2_before_anything_runs(tmp_path, sweep_file):
    for command in (["show", "small", "--alpha", "0"], ["show", "small", "--alpha", "1.5"],
                    ["show", "small", "--alpha", "nan"], ["run", str(sweep_file), "--alpha", "1"]):
        result = hpo(*command, cwd=tmp_path)
        assert result.returncode == 2
        assert result.stderr.startswith(f"hpo: error: --alpha = {float(command[-1]):g}: "
                                        "expected a number between 0 and 1")
        assert len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "studies").exists()  # the sweep did not start
