"""Results on a study made without training: real Optuna, real SQLite, runs recorded through
hpo's Recorder and Leases as the runner records them, with made-up numbers.

Every expected number is computed here from the numbers written (numpy, scipy, statsmodels),
never read back from Results. Fast (about a second), so mutation testing can use it.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from hpo import MetricNotFound, QueryError, Results, StorageError, StudyNotFound
from hpo.stats import summarize
from hpo.store import Store
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder
from hpo.study import PRUNED_AT_ATTR

NAN = math.nan
CHOICES = {"width": (4, 8, 16, 64), "optimizer": ("adam", "sgd")}

# Study "syn": maximize val_accuracy, reduced to the last epoch. trial number → (width, trial
# state, runs: seed → (run state, error, history)). Trial 3 is a grid-race duplicate (skipped).
SYN = {
    0: (4, "COMPLETE", {
        0: ("COMPLETE", None, {"loss": [1.0, 0.8, 0.6], "val_accuracy": [0.60, 0.70, 0.80]}),
        1: ("COMPLETE", None, {"loss": [1.1, 0.9, 0.7], "val_accuracy": [0.62, 0.74, 0.78]}),
        2: ("COMPLETE", None, {"loss": [0.9, 0.7, 0.5], "val_accuracy": [0.58, 0.71, 0.83]}),
    }),
    1: (16, "COMPLETE", {  # seed 1 diverged in its second epoch; the trial stands on 2 seeds
        0: ("COMPLETE", None, {"loss": [1.2, 1.0, 0.9], "val_accuracy": [0.50, 0.55, 0.60]}),
        1: ("FAIL", "loss became NaN", {"loss": [1.5, NAN], "val_accuracy": [0.40, NAN]}),
        2: ("COMPLETE", None, {"loss": [1.3, 1.1, 1.0], "val_accuracy": [0.52, 0.58, 0.57]}),
    }),
    2: (64, "PRUNED", {
        0: ("PRUNED", None, {"loss": [2.0], "val_accuracy": [0.20]}),
    }),
    3: (4, "skipped", {}),
    4: (8, "COMPLETE", {
        0: ("COMPLETE", None, {"loss": [1.9, 1.8, 1.7], "val_accuracy": [0.30, 0.35, 0.40]}),
        1: ("COMPLETE", None, {"loss": [1.8, 1.7, 1.6], "val_accuracy": [0.32, 0.36, 0.42]}),
        2: ("COMPLETE", None, {"loss": [2.0, 1.9, 1.8], "val_accuracy": [0.29, 0.33, 0.39]}),
        3: ("INTERRUPTED", None, {}),  # Ctrl-C before its first epoch ended
    }),
}
# Study "other": minimize val_loss, reduced to the best epoch; two params.
OTHER = {
    0: ({"width": 4, "optimizer": "sgd"}, "COMPLETE", {
        0: ("COMPLETE", None, {"val_loss": [0.9, 0.5, 0.7]}),
        1: ("COMPLETE", None, {"val_loss": [0.8, 0.6, 0.65]}),
    }),
}
# Study "peak": maximize val_accuracy, reduced to the best epoch.
PEAK = {
    0: (8, "COMPLETE", {
        0: ("COMPLETE", None, {"val_accuracy": [0.5, 0.9, 0.7]}),
        1: ("COMPLETE", None, {"val_accuracy": [0.6, 0.8, 0.85]}),
    }),
}
# Study "plain": no stored sweep settings (made by plain Optuna or an early hpo): the defaults,
# val_accuracy reduced to the last epoch, apply.
PLAIN = {
    0: (4, "COMPLETE", {
        0: ("COMPLETE", None, {"val_accuracy": [0.5, 0.9, 0.7], "loss": [1.0, 0.5, 0.2]}),
        1: ("COMPLETE", None, {"val_accuracy": [0.6, 0.8, 0.75], "loss": [1.1, 0.6, 0.3]}),
    }),
    1: (8, "COMPLETE", {
        0: ("COMPLETE", None, {"val_accuracy": [0.4, 0.5, 0.45], "loss": [1.3, 1.0, 0.9]}),
        1: ("COMPLETE", None, {"val_accuracy": [0.3, 0.6, 0.5], "loss": [1.4, 1.1, 1.0]}),
    }),
}


def record(store: Store, name: str, direction: str, settings: dict | None, trials: dict) -> None:
    """Write ``trials`` as the runner would: leases, runs and epochs through the Recorder, the
    trial statistics over the COMPLETE seeds as user attributes, the value, the state.
    ``settings`` None: no stored sweep (the defaults apply)."""
    study = optuna.create_study(study_name=name, storage=store.optuna, direction=direction)
    if settings is not None:
        study.set_user_attr("hpo.sweep", settings)
    settings = settings or {"study.objective": "val_accuracy", "study.reduce": "last"}
    objective, best = settings["study.objective"], settings["study.reduce"] == "best"
    leases, recorder = Leases(store.engine), Recorder(store.engine)
    for _, (params, state, runs) in sorted(trials.items()):
        params = params if isinstance(params, dict) else {"width": params}
        study.enqueue_trial(params, skip_if_exists=False)
        trial = study.ask({name: optuna.distributions.CategoricalDistribution(CHOICES[name])
                           for name in params})
        claim = leases.take(trial._trial_id)
        # The seeds trained together (packed): each epoch of every seed in turn, the metrics in
        # Keras' order (not sorted), so nothing is stored in the order Results reads it back.
        run_ids = {seed: recorder.start_run(claim, seed) for seed in runs}
        for epoch in range(max((len(h[2][m]) for h in runs.values() for m in h[2]), default=0)):
            for seed, (_, _, history) in runs.items():
                logs = {m: v[epoch] for m, v in reversed(history.items()) if epoch < len(v)}
                if logs:
                    recorder.record_epoch(claim, run_ids[seed], epoch + 1, logs)
        for seed, (run_state, error, _) in runs.items():
            recorder.finish_run(claim, run_ids[seed], run_state, error)
        if state == "COMPLETE":
            pick = max if direction == "maximize" else min
            values = [pick(h[objective]) if best else h[objective][-1]
                      for _, (s, _, h) in sorted(runs.items()) if s == "COMPLETE"]
            summary = summarize(values)
            for key, value in summary.as_dict().items():
                trial.set_user_attr(key, value)
            study.tell(trial, summary.mean)
        elif state == "PRUNED":
            # As the pruning sink does: the mean over seeds of the objective at each epoch.
            for epoch in range(max(len(h[objective]) for _, _, h in runs.values())):
                values = [h[objective][epoch] for _, _, h in runs.values()
                          if epoch < len(h[objective])]
                trial.report(sum(values) / len(values), epoch + 1)
            trial.set_user_attr(PRUNED_AT_ATTR, epoch + 1)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            trial.set_user_attr("hpo.skipped", "grid point of trial 0")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)


@pytest.fixture(scope="module")
def url(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('results') / 'study.db'}"
    store = Store.open(url, create=True)
    record(store, "syn", "maximize", {"study.objective": "val_accuracy", "study.reduce": "last"},
           SYN)
    record(store, "other", "minimize", {"study.objective": "val_loss", "study.reduce": "best"},
           OTHER)
    record(store, "peak", "maximize", {"study.objective": "val_accuracy", "study.reduce": "best"},
           PEAK)
    record(store, "plain", "maximize", None, PLAIN)
    optuna.create_study(study_name="empty", storage=store.optuna)
    store.dispose()
    return url


@pytest.fixture
def r(url):
    with Results(url) as results:
        yield results


def last(trial: int, seed: int, metric: str = "val_accuracy") -> float:
    return SYN[trial][2][seed][2][metric][-1]


def complete(trial: int) -> dict[int, float]:
    """Seed → last val_accuracy of the trial's COMPLETE runs."""
    return {seed: h["val_accuracy"][-1] for seed, (s, _, h) in SYN[trial][2].items()
            if s == "COMPLETE"}


def test_a_missing_database_is_an_error_not_an_empty_one(tmp_path):
    with pytest.raises(StorageError, match="no database file"):
        Results(f"sqlite:///{tmp_path / 'nope.db'}")
    assert not (tmp_path / "nope.db").exists()


def test_studies_lists_each_study_with_its_number_direction_and_counts(r):
    frame = r.studies().set_index("name").sort_index()
    ids = {name: r.store.optuna.get_study_id_from_name(name) for name in ("syn", "other", "empty")}
    assert set(frame.index) == {"empty", "other", "peak", "plain", "syn"}
    frame = frame.loc[["empty", "other", "syn"]]
    assert list(r.studies().columns) == ["name", "number", "direction", "n_trials", "n_runs"]
    assert frame.to_dict("index") == {
        "empty": {"number": ids["empty"], "direction": "minimize", "n_trials": 0, "n_runs": 0},
        "other": {"number": ids["other"], "direction": "minimize", "n_trials": 1, "n_runs": 2},
        "syn": {"number": ids["syn"], "direction": "maximize", "n_trials": 5, "n_runs": 11},
    }
    assert frame["n_runs"].dtype == "int64"


def test_a_study_is_named_by_name_or_number(r):
    number = r.store.optuna.get_study_id_from_name("other")
    assert r.name("other") == r.name(number) == r.name(str(number)) == "other"
    for unknown in ("nope", 99, "99"):
        with pytest.raises(StudyNotFound) as error:
            r.name(unknown)
        assert str(error.value) == (f"study {unknown!r}: not in {r.store.url}; studies there: "
                                    + ", ".join(r.study_names()))


def test_trials_hold_the_stored_statistics_and_leave_grid_race_duplicates_out(r):
    trials = r.trials("syn")
    assert list(trials.columns) == ["number", "state", "width", "n", "mean", "var", "std", "sem",
                                    "ci95_low", "ci95_high", "value", "pruned_at", "pruned_mean"]
    assert trials["number"].tolist() == [0, 1, 2, 4]
    assert trials["state"].tolist() == ["COMPLETE", "COMPLETE", "PRUNED", "COMPLETE"]
    assert trials["width"].tolist() == [4, 16, 64, 8]
    assert str(trials["n"].dtype) == "Int64" and trials["n"].isna().tolist() == [0, 0, 1, 0]
    for column in ("mean", "var", "std", "sem", "ci95_low", "ci95_high", "value"):
        assert trials[column].dtype == "float64"
    for row in trials[trials["state"] == "COMPLETE"].itertuples():
        x = np.array([v for _, v in sorted(complete(row.number).items())])
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert row.n == len(x) and row.value == pytest.approx(x.mean())
        assert (row.mean, row.var, row.std, row.sem, row.ci95_low, row.ci95_high) == pytest.approx(
            (x.mean(), x.var(ddof=1), x.std(ddof=1), stats.sem(x), low, high))
    pruned = trials.iloc[2]
    assert pruned[["mean", "std"]].isna().all()
    # Its partial result: the mean over its seeds at the epoch it was stopped (0.20, epoch 1),
    # which Optuna also gives a pruned trial as its value.
    assert (pruned["pruned_at"], pruned["pruned_mean"]) == (1, pytest.approx(0.20))
    assert pruned["value"] == pytest.approx(0.20)
    assert trials.drop(index=2)[["pruned_at", "pruned_mean"]].isna().all().all()


def test_trials_where_keeps_the_trials_with_those_params(r):
    assert r.trials("syn", {"width": 16})["number"].tolist() == [1]
    assert r.trials("syn", {"width": 5}).empty
    with pytest.raises(QueryError) as error:
        r.trials("syn", {"depth": 3})
    assert str(error.value) == "where depth = 3: not a parameter of study 'syn'; parameters: width"


def expected_epochs(trials: dict) -> list[tuple]:
    rows = [(trial, seed, epoch + 1, metric, value)
            for trial, (_, state, runs) in trials.items() if state != "skipped"
            for seed, (_, _, history) in runs.items()
            for metric, values in history.items() for epoch, value in enumerate(values)]
    return sorted(rows, key=lambda row: row[:4])


def same_rows(frame: pd.DataFrame, rows: list[tuple]) -> bool:
    got = [tuple(row) for row in frame.itertuples(index=False)]
    return len(got) == len(rows) and all(
        g[:4] == e[:4] and (g[4] == pytest.approx(e[4]) or (math.isnan(g[4]) and math.isnan(e[4])))
        for g, e in zip(got, rows, strict=True))


@pytest.mark.parametrize("reader", ["arrow", "sqlalchemy"])
def test_epochs_is_every_value_in_long_form_sorted_by_trial_seed_epoch_metric(
        r, monkeypatch, reader):
    if reader == "sqlalchemy":  # without the ADBC driver: the same frame, another path
        monkeypatch.setitem(__import__("sys").modules, "adbc_driver_sqlite.dbapi", None)
    epochs = r.epochs("syn")
    assert list(epochs.columns) == ["trial", "seed", "epoch", "metric", "value"]
    assert [str(epochs[c].dtype) for c in ("trial", "seed", "epoch", "value")] == [
        "int64", "int64", "int64", "float64"]
    assert same_rows(epochs, expected_epochs(SYN))
    assert same_rows(r.epochs("other"), expected_epochs(OTHER))
    wide = r.epochs("syn", where={"width": 16})
    assert same_rows(wide, [row for row in expected_epochs(SYN) if row[0] == 1])


def test_runs_end_on_the_last_epochs_value_even_when_it_is_nan(r):
    runs = r.runs("syn")
    assert list(runs.columns[:8]) == ["trial", "seed", "state", "wall_s", "error", "started_at",
                                      "finished_at", "epochs"]
    expected = [(t, s, state, error, len(h.get("loss", [])))
                for t, (_, _, rs) in SYN.items() for s, (state, error, h) in rs.items()]
    assert [(row.trial, row.seed, row.state, row.error if isinstance(row.error, str) else None,
             row.epochs) for row in runs.itertuples()] == expected
    assert runs["epochs"].dtype == "int64" and (runs["wall_s"] >= 0).all()
    for row in runs.itertuples():
        history = SYN[row.trial][2][row.seed][2]
        for metric in ("loss", "val_accuracy"):
            value = getattr(row, metric)
            if history:  # the final epoch's value, NaN for the diverged run
                assert value == pytest.approx(history[metric][-1], nan_ok=True)
            else:
                assert math.isnan(value)
    assert math.isnan(runs.set_index(["trial", "seed"]).loc[(1, 1), "val_accuracy"])
    assert r.runs("syn", where={"width": 8})["seed"].tolist() == [0, 1, 2, 3]


def test_curves_are_numpy_and_scipy_over_each_epochs_finite_values(r):
    curves = r.curves("syn", "val_accuracy")
    assert list(curves.columns) == ["trial", "epoch", "n", "mean", "std", "sem", "ci95_low",
                                    "ci95_high"]
    expected = []
    for trial, (_, _, runs) in sorted(SYN.items()):
        histories = [h["val_accuracy"] for _, _, h in runs.values() if h]
        for epoch in range(max((len(h) for h in histories), default=0)):
            x = np.array([h[epoch] for h in histories
                          if epoch < len(h) and not math.isnan(h[epoch])])
            expected.append((trial, epoch + 1, x))
    assert [(row.trial, row.epoch, row.n) for row in curves.itertuples()] == [
        (t, e, len(x)) for t, e, x in expected]
    for row, (_, _, x) in zip(curves.itertuples(), expected, strict=True):
        assert row.mean == pytest.approx(x.mean())
        if len(x) < 2:
            assert math.isnan(row.std) and math.isnan(row.ci95_low) and math.isnan(row.sem)
            continue
        low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
        assert (row.std, row.sem, row.ci95_low, row.ci95_high) == pytest.approx(
            (x.std(ddof=1), stats.sem(x), low, high))
    assert r.curves("syn", "loss", where={"width": 64})[["trial", "n"]].values.tolist() == [[2, 1]]
    with pytest.raises(MetricNotFound) as error:
        r.curves("syn", "accuracy")
    assert str(error.value) == ("metric 'accuracy': not recorded in study 'syn'; recorded: "
                                "loss, val_accuracy")
    with pytest.raises(MetricNotFound, match="recorded: none$"):
        r.curves("empty", "loss")


def test_the_seed_table_reduces_each_complete_run_as_the_study_does(r):
    table = r.seed_table("syn")
    assert list(table.columns) == ["trial", "seed", "state", "value"]
    assert [tuple(row) for row in table.itertuples(index=False)] == [
        (t, s, "COMPLETE", pytest.approx(v)) for t in (0, 1, 4) for s, v in complete(t).items()]
    every = r.seed_table("syn", states=None)
    assert len(every) == 10  # every run with a value: not the interrupted one with no epoch
    assert every.set_index(["trial", "seed"]).loc[(1, 1), "state"] == "FAIL"
    assert math.isnan(every.set_index(["trial", "seed"]).loc[(1, 1), "value"])
    partial = r.seed_table("syn", states=("COMPLETE", "PRUNED"))
    assert partial[partial["trial"] == 2][["seed", "state", "value"]].values.tolist() == [
        [0, "PRUNED", 0.2]]
    losses = r.seed_table("syn", "loss")
    assert losses["value"].tolist() == pytest.approx(
        [last(t, s, "loss") for t in (0, 1, 4) for s in complete(t)])
    # "other" minimizes val_loss reduced to the best epoch: the lowest value of each run.
    best = r.seed_table("other")
    assert best["value"].tolist() == pytest.approx([0.5, 0.6])
    with pytest.raises(MetricNotFound) as error:
        r.seed_table("syn", "accuracy")
    assert str(error.value) == ("metric 'accuracy': not recorded in study 'syn'; recorded: "
                                "loss, val_accuracy")
    assert r.seed_table("empty").empty


def test_left_out_seeds_are_the_runs_that_are_not_complete(r):
    left_out = r.left_out_seeds("syn")
    assert list(left_out.columns) == ["trial", "seed", "state", "error"]
    assert [(row.trial, row.seed, row.state, row.error if isinstance(row.error, str) else None)
            for row in left_out.itertuples()] == [
        (1, 1, "FAIL", "loss became NaN"), (2, 0, "PRUNED", None), (4, 3, "INTERRUPTED", None)]
    assert r.left_out_seeds("syn", trials=[2, 4])["trial"].tolist() == [2, 4]
    assert r.left_out_seeds("syn", trials=[0]).empty


def test_seed_values_and_their_errors(r):
    assert r.seed_values("syn", 1) == pytest.approx(complete(1))
    assert r.seed_values("other", 0) == pytest.approx({0: 0.5, 1: 0.6})
    with pytest.raises(QueryError) as error:
        r.seed_values("syn", 7)
    assert str(error.value) == "trial 7: not a trial of study 'syn'; trials: 0, 1, 2, 4"
    with pytest.raises(QueryError) as error:
        r.seed_values("syn", 2)
    assert str(error.value) == (
        "trial 2 of study 'syn': no COMPLETE run with a value of 'the objective' (runs that "
        "are not COMPLETE are left out of statistics)")
    with pytest.raises(QueryError, match="with a value of 'loss'"):
        r.seed_values("syn", 2, "loss")


def test_compare_is_scipy_on_the_complete_runs(r):
    result = r.compare("syn", 0, 1)
    a, b = complete(0), complete(1)
    x, y = np.array(list(a.values())), np.array(list(b.values()))
    assert (result["trial_a"], result["trial_b"], result["n_a"], result["n_b"]) == (0, 1, 3, 2)
    assert result["welch_p"] == pytest.approx(stats.ttest_ind(x, y, equal_var=False).pvalue)
    common = [0, 2]
    paired = stats.ttest_rel([a[s] for s in common], [b[s] for s in common])
    assert result["paired_n"] == 2 and result["paired_p"] == pytest.approx(paired.pvalue)
    assert result["mean_a"] == pytest.approx(x.mean()) and result["mean_b"] == pytest.approx(
        y.mean())


def test_compare_all_tests_every_complete_trial_against_the_best(r):
    frame = r.compare_all("syn")
    assert list(frame.columns) == ["trial", "best", "n", "n_best", "diff", "diff_ci95_low",
                                   "diff_ci95_high", "test", "p", "p_holm", "verdict"]
    assert frame.attrs == {"best": 0, "alpha": 0.05, "metric": "val_accuracy",
                           "direction": "maximize", "reduce": "last"}
    best = complete(0)
    rows = []
    for trial in (1, 4):  # the pruned trial 2 is not COMPLETE: not compared
        other = complete(trial)
        common = sorted(set(other) & set(best))
        x, y = np.array([other[s] for s in common]), np.array([best[s] for s in common])
        test = stats.ttest_rel(x, y)
        ci = test.confidence_interval(0.95)
        rows.append((trial, len(common), (x - y).mean(), ci.low, ci.high, test.pvalue))
    reject, p_holm, _, _ = multipletests([row[-1] for row in rows], alpha=0.05, method="holm")
    assert frame["trial"].tolist() == [1, 4] and (frame["best"] == 0).all()
    assert frame["n"].tolist() == frame["n_best"].tolist() == [2, 3]
    assert frame["test"].tolist() == ["paired", "paired"]
    for column, index in (("diff", 2), ("diff_ci95_low", 3), ("diff_ci95_high", 4), ("p", 5)):
        assert frame[column].tolist() == pytest.approx([row[index] for row in rows]), column
    assert frame["p_holm"].tolist() == pytest.approx(list(p_holm))
    assert frame["verdict"].tolist() == [
        ("worse" if rejected else "not distinguishable") + f" (p_holm={p:.2g})"
        for p, rejected in zip(p_holm, reject, strict=True)]


def test_compare_all_takes_a_metric_a_direction_and_refuses_bad_ones(r):
    losses = r.compare_all("syn", metric="loss", direction="minimize", alpha=0.2)
    means = {t: np.mean([last(t, s, "loss") for s in complete(t)]) for t in (0, 1, 4)}
    assert losses.attrs["best"] == min(means, key=means.get) == 0
    assert losses.attrs["metric"] == "loss" and losses.attrs["alpha"] == 0.2
    assert losses.attrs["direction"] == "minimize" and (losses["diff"] > 0).all()
    other = r.compare_all("other")
    assert other.empty and other.attrs["best"] == 0 and other.attrs["reduce"] == "best"
    assert other.attrs["direction"] == "minimize"
    for alpha in (0, 1, 1.5):
        with pytest.raises(QueryError) as error:
            r.compare_all("syn", alpha=alpha)
        assert str(error.value) == (f"alpha = {alpha!r}: expected a number between 0 and 1 "
                                    "(exclusive)")
    with pytest.raises(QueryError) as error:
        r.compare_all("syn", direction="up")
    assert str(error.value) == "direction = 'up': expected maximize or minimize"
    assert r.compare_all("empty").empty


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
@pytest.mark.parametrize("what", ["trials", "runs", "epochs"])
def test_export_writes_the_table_it_returns(r, tmp_path, what, fmt):
    path = tmp_path / f"{what}.{fmt}"
    frame = r.export("syn", what, fmt, str(path))
    expected = getattr(r, what)("syn")
    assert list(frame.columns) == list(expected.columns) and len(frame) == len(expected)
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet,
            "json": lambda p: pd.read_json(p, orient="records")}[fmt](path)
    assert list(read.columns) == list(frame.columns) and len(read) == len(frame)
    column = {"trials": "mean", "runs": "val_accuracy", "epochs": "value"}[what]
    assert np.allclose(read[column].astype(float), frame[column].astype(float), equal_nan=True)
    if fmt == "json":
        assert path.read_text().startswith("[\n {")  # records, indented by one


def test_export_refuses_what_it_cannot_write(r, tmp_path, monkeypatch):
    with pytest.raises(QueryError) as error:
        r.export("syn", "curves", "csv", str(tmp_path / "x"))
    assert str(error.value) == "what = 'curves': expected one of trials, runs, epochs"
    with pytest.raises(QueryError) as error:
        r.export("syn", "runs", "xlsx", str(tmp_path / "x"))
    assert str(error.value) == "fmt = 'xlsx': expected one of csv, parquet, json"

    def no_pyarrow(*args, **kwargs):
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", no_pyarrow)
    with pytest.raises(QueryError) as error:
        r.export("syn", "runs", "parquet", str(tmp_path / "x"))
    assert str(error.value) == "fmt = 'parquet': needs pyarrow (pip install pyarrow)"


def test_sweep_settings_are_the_stored_identity(r):
    assert r.sweep_settings("other") == {"study.objective": "val_loss", "study.reduce": "best"}
    assert r.sweep_settings("empty") == {}


# --- Defaults, other directions and reductions, and the messages of empty studies ---


def test_a_database_without_studies_says_so(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    Store.open(url, create=True).dispose()
    with Results(url) as r:
        assert r.study_names() == []
        with pytest.raises(StudyNotFound) as error:
            r.name("x")
    assert str(error.value) == f"study 'x': not in {url}; studies there: none"


def test_a_database_without_studies_lists_none(tmp_path):
    url = f"sqlite:///{tmp_path / 'none.db'}"
    Store.open(url, create=True).dispose()
    with Results(url) as r:
        frame = r.studies()
    assert frame.empty
    assert list(frame.columns) == ["name", "number", "direction", "n_trials", "n_runs"]


def test_an_empty_study_has_typed_empty_tables_and_says_what_it_lacks(r):
    trials = r.trials("empty")
    assert trials.empty and str(trials["n"].dtype) == "Int64"
    assert all(trials[c].dtype == "float64"
               for c in ("mean", "var", "std", "sem", "ci95_low", "ci95_high", "value"))
    with pytest.raises(QueryError) as error:
        r.trials("empty", {"width": 4})
    assert str(error.value) == ("where width = 4: not a parameter of study 'empty'; "
                                "parameters: none")
    with pytest.raises(QueryError) as error:
        r.seed_values("empty", 0)
    assert str(error.value) == "trial 0: not a trial of study 'empty'; trials: none"
    assert list(r.compare_all("empty").columns) == [
        "trial", "best", "n", "n_best", "diff", "diff_ci95_low", "diff_ci95_high", "test", "p",
        "p_holm", "verdict"]


def test_a_study_with_several_params_lists_them_all(r):
    assert r.trials("other")[["width", "optimizer"]].values.tolist() == [[4, "sgd"]]
    with pytest.raises(QueryError) as error:
        r.trials("other", {"depth": 1})
    assert str(error.value) == ("where depth = 1: not a parameter of study 'other'; "
                                "parameters: optimizer, width")


def test_epochs_are_numbered_from_zero(r):
    epochs = r.epochs("syn")
    assert epochs.index.tolist() == list(range(len(epochs)))


def test_the_best_epoch_of_a_maximized_objective_is_its_highest(r):
    assert r.seed_table("peak")["value"].tolist() == [0.9, 0.85]
    assert r.compare_all("peak").attrs["reduce"] == "best"


def test_without_stored_settings_the_objective_is_val_accuracy_at_the_last_epoch(r):
    assert r.sweep_settings("plain") == {}
    assert r.seed_table("plain")["value"].tolist() == [0.7, 0.75, 0.45, 0.5]
    frame = r.compare_all("plain")
    assert frame.attrs["metric"] == "val_accuracy" and frame.attrs["reduce"] == "last"
    assert frame.attrs["best"] == 0 and frame["trial"].tolist() == [1]
    assert frame["diff"].tolist() == pytest.approx([-0.25])


def test_seed_values_take_a_metric_and_reuse_a_given_table(r):
    assert r.seed_values("syn", 0, "loss") == pytest.approx(
        {s: last(0, s, "loss") for s in (0, 1, 2)})
    every = r.seed_table("syn", states=None)  # FAIL runs too: the diverged seed 1 is NaN
    values = r.seed_values("syn", 1, table=every)
    assert sorted(values) == [0, 1, 2] and math.isnan(values[1])


def test_compare_takes_a_metric_and_names_a_missing_trial(r):
    result = r.compare("syn", 0, 4, "loss")
    x = np.array([last(0, s, "loss") for s in (0, 1, 2)])
    y = np.array([last(4, s, "loss") for s in (0, 1, 2)])
    assert result["mean_a"] == pytest.approx(x.mean()) and result["mean_b"] == pytest.approx(
        y.mean())
    assert result["paired_p"] == pytest.approx(stats.ttest_rel(x, y).pvalue)
    for a, b in ((0, 7), (7, 0)):
        with pytest.raises(QueryError) as error:
            r.compare("syn", a, b)
        assert str(error.value) == "trial 7: not a trial of study 'syn'; trials: 0, 1, 2, 4"
    for a, b in ((0, 2), (2, 0)):  # the pruned trial has no COMPLETE run
        with pytest.raises(QueryError) as error:
            r.compare("syn", a, b, "loss")
        assert str(error.value) == (
            "trial 2 of study 'syn': no COMPLETE run with a value of 'loss' (runs that are not "
            "COMPLETE are left out of statistics)")


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1, 0.5])
def test_compare_all_judges_at_the_given_alpha(r, alpha):
    frame = r.compare_all("syn", alpha=alpha, direction="maximize")
    reject, p_holm, _, _ = multipletests(frame["p"], alpha=alpha, method="holm")
    assert frame["p_holm"].tolist() == pytest.approx(list(p_holm))
    assert frame["verdict"].tolist() == [
        ("worse" if rejected else "not distinguishable") + f" (p_holm={p:.2g})"
        for p, rejected in zip(p_holm, reject, strict=True)]
    assert frame.attrs["alpha"] == alpha


def test_trials_sort_by_param_or_best_value_first(r):
    assert r.trials("syn", sort="param")["width"].tolist() == [4, 8, 16, 64]
    # COMPLETE trials best first; the pruned one (value 0.20, a partial mean) after them.
    assert r.trials("syn", sort="value")["number"].tolist() == [0, 1, 4, 2]
    assert r.trials("other", sort="value")["number"].tolist() == [0]
    assert r.best_trial("syn") == 0
    with pytest.raises(QueryError, match="sort = 'width': expected one of trial, param, value"):
        r.trials("syn", sort="width")


def test_elapsed_counts_overlapping_runs_once(r, url):
    import sqlalchemy as sa

    with Store.open(url).engine.begin() as conn:  # made-up times: two packs of runs
        runs = conn.execute(sa.text(
            "SELECT r.run_id FROM hpo_runs r JOIN trials t ON t.trial_id = r.trial_id "
            "JOIN studies s ON s.study_id = t.study_id WHERE s.study_name = 'plain' "
            "ORDER BY t.number, r.seed")).scalars().all()
        times = [("2026-01-01 10:00:00", "2026-01-01 10:01:00"),
                 ("2026-01-01 10:00:30", "2026-01-01 10:01:30"),
                 ("2026-01-01 10:05:00", "2026-01-01 10:05:10"),
                 ("2026-01-01 10:05:00", "2026-01-01 10:05:05")]
        for run_id, (start, end) in zip(runs, times, strict=True):
            conn.execute(sa.text("UPDATE hpo_runs SET started_at = :s, finished_at = :e "
                                 "WHERE run_id = :r"), {"s": start, "e": end, "r": run_id})
    elapsed = r.elapsed("plain")
    assert elapsed["runs"] == 4
    assert elapsed["busy_s"] == 90 + 10  # 10:00:00-10:01:30 and 10:05:00-10:05:10
    assert elapsed["span_s"] == 310
    assert str(elapsed["first"]) == "2026-01-01 10:00:00"
