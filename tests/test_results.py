"""Results: statistics per epoch and between trials equal numpy/scipy; export round-trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hpo import Results, SweepError, parse_sweep, run_sweep

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
        with pytest.raises(SweepError, match="where depth = 3: not a parameter"):
            r.trials("small", {"depth": 3})
        with pytest.raises(SweepError, match="metric 'val_acc': not recorded"):
            r.curves("small", "val_acc")


def test_hostile_names_reach_sql_only_as_parameters(sqlite_url):
    hostile = "x'); DROP TABLE trials; --"
    sweep = parse_sweep(SMALL_SWEEP, [f'study.name="{hostile}"', "train.epochs=1",
                                      "protocol.repeats=1", "search.space.width=[4]"])
    run_sweep(sweep, storage=sqlite_url)
    with Results(sqlite_url) as r:
        assert r.study_names() == [hostile]
        assert len(r.epochs(hostile)) == 4 and len(r.runs(hostile)) == 1
        with pytest.raises(SweepError, match="not recorded"):
            r.curves(hostile, "loss'; DELETE FROM hpo_epochs; --")
        with pytest.raises(SweepError, match="not in"):
            r.trials("y' OR '1'='1")
        assert len(r.epochs(hostile)) == 4  # nothing was dropped or deleted
