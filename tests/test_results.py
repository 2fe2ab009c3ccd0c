"""Results: statistics per epoch and between trials equal numpy/scipy; export round-trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from study_edits import copy_study, fail_seed

from hpo import MetricNotFound, QueryError, Results, StudyNotFound, parse_sweep, run_sweep

from conftest import SMALL_SWEEP


def test_curves_equal_numpy_and_scipy(small_study):
    _, url = small_study
    with Results(url) as r:
        curves, epochs = r.curves("small", "val_accuracy"), r.epochs("small")
    assert list(curves.columns) == ["trial", "epoch", "n", "mean", "std", "sem", "ci95_low",
                                    "ci95_high"]
    for row in curves.itertuples():
        x = epochs[(epochs["trial"] == row.trial) & (epochs["epoch"] == row.epoch)
                   & (epochs["metric"] == "val_accuracy")]["value"].to_numpy()
        assert row.n == 3 and row.mean == pytest.approx(x.mean())
        assert row.std == pytest.approx(x.std(ddof=1))
        low, high = stats.t.interval(0.95, 2, loc=x.mean(), scale=stats.sem(x))
        assert (row.ci95_low, row.ci95_high) == pytest.approx((low, high))


def test_compare_gives_scipys_p_values(small_study):
    _, url = small_study
    with Results(url) as r:
        result = r.compare("small", 0, 1)
        a, b = r.seed_values("small", 0), r.seed_values("small", 1)
    x, y = np.array([a[s] for s in (0, 1, 2)]), np.array([b[s] for s in (0, 1, 2)])
    assert result["welch_p"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    assert result["paired_p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    assert result["mean_difference"] == pytest.approx((x - y).mean())
    assert result["cohens_dz"] == pytest.approx((x - y).mean() / (x - y).std(ddof=1))
    pooled = np.sqrt((x.var(ddof=1) + y.var(ddof=1)) / 2)
    assert result["cohens_d"] == pytest.approx((x.mean() - y.mean()) / pooled)
    assert result["paired_n"] == 3 and result["n_a"] == 3


def test_seed_values_follow_the_studys_reduction(small_study):
    _, url = small_study
    with Results(url) as r:
        values, runs = r.seed_values("small", 1), r.runs("small")
    last = runs[runs["trial"] == 1].set_index("seed")["val_accuracy"]
    assert values == pytest.approx(last.to_dict())


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
@pytest.mark.parametrize("what", ["trials", "runs", "epochs"])
def test_export_round_trips(small_study, tmp_path, what, fmt):
    _, url = small_study
    path = tmp_path / f"{what}.{fmt}"
    with Results(url) as r:
        frame = r.export("small", what, fmt, str(path))
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "json": lambda p: pd.read_json(p, orient="records")}[fmt](path)
    assert list(read.columns) == list(frame.columns) and len(read) == len(frame)
    for column in ("value", "val_accuracy", "mean"):
        if column in frame:
            assert np.allclose(read[column].astype(float), frame[column].astype(float),
                               equal_nan=True)


def test_study_numbers_and_param_filters(small_study):
    _, url = small_study
    with Results(url) as r:
        number = int(r.store.optuna.get_study_id_from_name("small"))
        assert r.name(number) == r.name(str(number)) == "small"
        wide = r.trials(number, where={"width": 16})
        assert wide["width"].tolist() == [16]
        runs, epochs = r.runs("small", {"width": 16}), r.epochs("small", {"width": 16})
        assert set(runs["trial"]) == set(epochs["trial"]) == set(wide["number"])
        with pytest.raises(QueryError, match="where depth = 3: not a parameter"):
            r.trials("small", {"depth": 3})
        with pytest.raises(MetricNotFound, match="metric 'val_acc': not recorded"):
            r.curves("small", "val_acc")


def test_hostile_names_reach_sql_only_as_parameters(sqlite_url):
    hostile = "x'); DROP TABLE trials; --"
    sweep = parse_sweep(SMALL_SWEEP, [f'study.name="{hostile}"', "train.epochs=1",
                                      "protocol.repeats=1", "search.space.width=[4]"])
    run_sweep(sweep, storage=sqlite_url)
    with Results(sqlite_url) as r:
        assert r.study_names() == [hostile]
        assert len(r.epochs(hostile)) == 4 and len(r.runs(hostile)) == 1
        with pytest.raises(MetricNotFound, match="not recorded"):
            r.curves(hostile, "loss'; DELETE FROM hpo_epochs; --")
        with pytest.raises(StudyNotFound, match="not in"):
            r.trials("y' OR '1'='1")
        assert len(r.epochs(hostile)) == 4  # nothing was dropped or deleted


# --- One sample for every statistic: the COMPLETE runs; a diverged run ends on NaN ---


@pytest.fixture(scope="module")
def diverged(small_study, tmp_path_factory):
    """A copy of the small study whose worse trial lost seed 1 in its last epoch: the run is FAIL
    and that epoch's values NULL, the trial's statistics over its 2 COMPLETE seeds (what the
    runner stores with min_repeats = 2). Returns (url, that trial's number)."""
    _, url = small_study
    copy = copy_study(url, tmp_path_factory.mktemp("diverged"))
    with Results(copy) as r:
        worse = int(r.trials("small").sort_values("value").iloc[0]["number"])
    fail_seed(copy, "small", worse, 1)
    return copy, worse


def test_runs_show_a_diverged_runs_final_value_as_nan(diverged):
    url, worse = diverged
    with Results(url) as r:
        runs, epochs = r.runs("small").set_index(["trial", "seed"]), r.epochs("small")
    run = runs.loc[(worse, 1)]
    assert run["state"] == "FAIL" and run["epochs"] == 2
    assert np.isnan(run["val_accuracy"]) and np.isnan(run["loss"])
    # Its first epoch is finite: pandas' groupby().last() would have shown that value instead.
    first = epochs[(epochs["trial"] == worse) & (epochs["seed"] == 1) & (epochs["epoch"] == 1)]
    assert first["value"].notna().all() and len(first) == 4
    others = runs.drop(index=(worse, 1))
    assert others[["loss", "accuracy", "val_loss", "val_accuracy"]].notna().all().all()


def test_the_seed_table_holds_complete_runs_and_left_out_seeds_name_the_others(diverged):
    url, worse = diverged
    with Results(url) as r:
        table, every = r.seed_table("small"), r.seed_table("small", states=None)
        left_out = r.left_out_seeds("small")
    assert set(table["state"]) == {"COMPLETE"} and len(table) == 5
    assert (worse, 1) not in set(zip(table["trial"], table["seed"], strict=True))
    dropped = every[(every["trial"] == worse) & (every["seed"] == 1)]
    assert dropped["state"].tolist() == ["FAIL"] and dropped["value"].isna().all()
    assert left_out.to_dict("records") == [
        {"trial": worse, "seed": 1, "state": "FAIL", "error": "loss became NaN"}]


def test_the_trials_statistics_are_over_the_seed_tables_sample(small_study):
    _, url = small_study  # as the runner wrote them, untouched
    with Results(url) as r:
        trials, table = r.trials("small"), r.seed_table("small")
    for row in trials.itertuples():
        values = table.loc[table["trial"] == row.number].sort_values("seed")["value"]
        assert row.n == len(values) == 3
        assert row.mean == pytest.approx(values.mean()) and row.value == row.mean
        assert row.std == pytest.approx(values.std(ddof=1))


def test_compare_leaves_a_failed_seed_out_as_the_trials_own_statistics_do(diverged):
    url, worse = diverged
    with Results(url) as r:
        best = 1 - worse
        result, trials = r.compare("small", best, worse), r.trials("small").set_index("number")
        b = r.seed_values("small", worse)
    assert sorted(b) == [0, 2] and result["n_b"] == trials.loc[worse, "n"] == 2
    assert result["mean_b"] == pytest.approx(trials.loc[worse, "mean"])
    assert result["paired_n"] == 2


def _expected_compare_all(r: Results, study: str, alpha: float) -> pd.DataFrame:
    """compare_all recomputed along another path: final values from ``runs`` (COMPLETE runs,
    last epoch), the best from Optuna's trial values, then scipy and statsmodels directly."""
    trials = r.trials(study)
    complete = trials[trials["state"] == "COMPLETE"]
    best = int(complete.loc[complete["value"].idxmax(), "number"])
    runs = r.runs(study)
    runs = runs[runs["state"] == "COMPLETE"]
    values = {t: g.set_index("seed")["val_accuracy"] for t, g in runs.groupby("trial")}
    rows = []
    for trial in sorted(int(t) for t in complete["number"] if t != best):
        common = sorted(set(values[trial].index) & set(values[best].index))
        x, y = values[trial][common].to_numpy(), values[best][common].to_numpy()
        test = stats.ttest_rel(x, y)
        ci = test.confidence_interval(0.95)
        rows.append({"trial": trial, "n": len(common), "diff": (x - y).mean(),
                     "diff_ci95_low": ci.low, "diff_ci95_high": ci.high, "p": test.pvalue})
    frame = pd.DataFrame(rows)
    reject, frame["p_holm"], _, _ = multipletests(frame["p"], alpha=alpha, method="holm")
    frame["verdict"] = [
        ("worse" if d < 0 else "better") + f" (p_holm={p:.2g})" if rejected
        else f"not distinguishable (p_holm={p:.2g})"
        for d, p, rejected in zip(frame["diff"], frame["p_holm"], reject, strict=True)]
    frame.attrs["best"] = best
    return frame


@pytest.mark.parametrize("study", ["small_study", "diverged"])
def test_compare_all_equals_scipy_and_statsmodels_on_the_complete_runs(study, request):
    url = {"small_study": lambda f: f[1], "diverged": lambda f: f[0]}[study](
        request.getfixturevalue(study))
    with Results(url) as r:
        got = r.compare_all("small")
        loose = r.compare_all("small", alpha=0.5)
        expected = _expected_compare_all(r, "small", 0.05)
    assert got.attrs["best"] == expected.attrs["best"] and (got["best"] == got.attrs["best"]).all()
    assert got["test"].tolist() == ["paired"] * len(expected)
    for column in ("trial", "n", "diff", "diff_ci95_low", "diff_ci95_high", "p", "p_holm"):
        assert got[column].tolist() == pytest.approx(expected[column].tolist()), column
    assert got["verdict"].tolist() == expected["verdict"].tolist()
    assert loose["p_holm"].tolist() == got["p_holm"].tolist()  # alpha changes verdicts only


def test_compare_all_minimizes_a_loss_when_told_and_refuses_bad_input(small_study):
    _, url = small_study
    with Results(url) as r:
        losses = r.compare_all("small", metric="val_loss", direction="minimize")
        means = r.seed_table("small", "val_loss").groupby("trial")["value"].mean()
        assert losses.attrs["best"] == means.idxmin()
        assert (losses["diff"] > 0).all()  # every other trial's loss is above the best's
        for alpha in (0, 1, 1.5, -0.01):
            with pytest.raises(QueryError, match=f"alpha = {alpha}: expected a number between"):
                r.compare_all("small", alpha=alpha)
        with pytest.raises(QueryError, match="direction = 'up'"):
            r.compare_all("small", direction="up")
        with pytest.raises(QueryError, match="trial 7: not a trial of study 'small'"):
            r.compare("small", 0, 7)
