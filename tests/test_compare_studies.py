"""Comparing two studies (``Results.compare_studies``, ``hpo compare A B``) on studies recorded
without training: every expected number is computed here with scipy from the values written."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy import stats
from test_cli import hpo, table_rows
from test_results_fast import record

from hpo import MetricNotFound, Results
from hpo.store import Store

SETTINGS = {"study.objective": "val_accuracy", "study.reduce": "last"}


def run(history: list[float]) -> tuple:
    return ("COMPLETE", None, {"val_accuracy": history, "loss": [1.0] * len(history)})


# Q2-like (SGD) and Q4-like (Adam): the same seeds 0-3; "sgd"'s best is trial 1 (width 16).
SGD = {0: (4, "COMPLETE", {s: run([0.5, 0.60 + 0.01 * s]) for s in range(4)}),
       1: (16, "COMPLETE", {0: run([0.7, 0.81]), 1: run([0.7, 0.86]), 2: run([0.7, 0.80]),
                            3: run([0.7, 0.90])})}
ADAM = {0: (8, "COMPLETE", {0: run([0.8, 0.90]), 1: run([0.8, 0.93]), 2: run([0.8, 0.91]),
                            3: run([0.8, 0.95])})}
# Other seeds (10-12): no seed in common with the others, so Welch.
SHIFTED = {0: (8, "COMPLETE", {10: run([0.8, 0.84]), 11: run([0.8, 0.88]),
                               12: run([0.8, 0.83])})}


@pytest.fixture(scope="module")
def urls(tmp_path_factory):
    here = tmp_path_factory.mktemp("compare")
    urls = {}
    for name, trials in (("sgd", SGD), ("adam", ADAM), ("shifted", SHIFTED)):
        urls[name] = f"sqlite:///{here / name}.db"
        store = Store.open(urls[name], create=True)
        record(store, name, "maximize", SETTINGS, trials)
        store.dispose()
    return urls


def last(trials: dict, trial: int) -> dict[int, float]:
    return {seed: h[2]["val_accuracy"][-1] for seed, h in trials[trial][2].items()}


def test_same_seeds_are_paired_and_agree_with_ttest_rel(urls):
    with Results(urls["sgd"]) as a, Results(urls["adam"]) as b:
        r = a.compare_studies("sgd", "adam", other=b)
    x, y = last(SGD, 1), last(ADAM, 0)  # each study's best trial
    seeds = sorted(x)
    expected = stats.ttest_rel([x[s] for s in seeds], [y[s] for s in seeds])
    diffs = np.array([x[s] - y[s] for s in seeds])
    assert (r["trial_a"], r["trial_b"], r["test"], r["n"]) == (1, 0, "paired", 4)
    assert r["p"] == pytest.approx(expected.pvalue)
    assert (r["diff_ci95_low"], r["diff_ci95_high"]) == pytest.approx(
        tuple(expected.confidence_interval(0.95)))
    assert r["diff"] == pytest.approx(diffs.mean())
    assert r["effect"] == "d_z" and r["effect_size"] == pytest.approx(
        diffs.mean() / diffs.std(ddof=1))
    assert (r["mean_a"], r["mean_b"]) == pytest.approx((np.mean(list(x.values())),
                                                        np.mean(list(y.values()))))


def test_other_seeds_use_welch_and_a_named_trial(urls):
    with Results(urls["sgd"]) as a, Results(urls["shifted"]) as b:
        r = a.compare_studies("sgd", "shifted", trial_a=0, other=b)
    x, y = list(last(SGD, 0).values()), list(last(SHIFTED, 0).values())
    expected = stats.ttest_ind(x, y, equal_var=False)
    pooled = np.sqrt((3 * np.var(x, ddof=1) + 2 * np.var(y, ddof=1)) / 5)
    assert (r["trial_a"], r["test"], r["n_a"], r["n_b"]) == (0, "welch", 4, 3)
    assert r["p"] == pytest.approx(expected.pvalue)
    assert (r["diff_ci95_low"], r["diff_ci95_high"]) == pytest.approx(
        tuple(expected.confidence_interval(0.95)))
    assert r["effect"] == "cohens_d"
    assert r["effect_size"] == pytest.approx((np.mean(x) - np.mean(y)) / pooled)


def test_a_metric_one_study_does_not_record_is_refused(urls):
    with Results(urls["sgd"]) as a, Results(urls["adam"]) as b, pytest.raises(
            MetricNotFound, match="'val_top5'"):
        a.compare_studies("sgd", "adam", metric="val_top5", other=b)


def test_hpo_compare_across_two_databases(urls, tmp_path):
    out = hpo("compare", "sgd", "adam:0", "--storage", urls["sgd"], "--storage-b",
              urls["adam"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {row[""]: row for row in table_rows(out.stdout)}
    assert rows["n"]["sgd:1"] == "4" and rows["n"]["adam:0"] == "4"
    x, y = last(SGD, 1), last(ADAM, 0)
    expected = stats.ttest_rel([x[s] for s in range(4)], [y[s] for s in range(4)])
    p = float(re.search(r"p = ([0-9.e-]+)", out.stdout).group(1))
    assert p == pytest.approx(expected.pvalue, rel=1e-3)
    assert "paired t-test by seed on the 4 seeds" in out.stdout
    refused = hpo("compare", "sgd", "adam", "--metric", "val_top5", "--storage", urls["sgd"],
                  "--storage-b", urls["adam"], cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("hpo: error: metric 'val_top5'")
    assert len(refused.stderr.strip().splitlines()) == 1
