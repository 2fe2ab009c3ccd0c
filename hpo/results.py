"""Reading a study database into pandas: studies, trials, seeded runs, per-epoch metrics.

Example:
    >>> from hpo import Results
    >>> r = Results("sqlite:///studies/mnist-width.db")  # doctest: +SKIP
    >>> r.trials("mnist-width")[["width", "mean", "ci95_low", "ci95_high"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from scipy import stats as scipy_stats

from hpo import kept_models, stats
from hpo.config import RUN_MEASURES
from hpo.errors import MetricNotFound, QueryError, StudyNotFound
from hpo.stats import Summary
from hpo.store import Store, sqlite_file
from hpo.study import OBJECTIVES_ATTR, PRUNED_AT_ATTR, SKIPPED_ATTR, SWEEP_ATTR

_STAT_COLUMNS = [f for f in Summary.__dataclass_fields__]
_COMPARE_ALL_COLUMNS = ["trial", "best", "n", "n_best", "diff", "diff_ci95_low", "diff_ci95_high",
                        "test", "p", "p_holm", "verdict"]

# Sorted in pandas rather than in SQL: sorting a million rows there costs more than the read.
_EPOCHS_QUERY = """
    SELECT t.number AS trial, r.seed AS seed, e.epoch AS epoch, e.metric AS metric,
           e.value AS value
    FROM hpo_epochs e
    JOIN hpo_runs r ON r.run_id = e.run_id
    JOIN trials t ON t.trial_id = r.trial_id
    JOIN studies s ON s.study_id = t.study_id
    WHERE s.study_name = {study}
"""
_EPOCH_ORDER = ["trial", "seed", "epoch", "metric"]
_RUNS_SQL = sa.text(
    """
    SELECT t.number AS trial, r.seed AS seed, r.state AS state, r.wall_s AS wall_s,
           r.error AS error, r.started_at AS started_at, r.finished_at AS finished_at,
           (SELECT MAX(e.epoch) FROM hpo_epochs e WHERE e.run_id = r.run_id) AS epochs
    FROM hpo_runs r
    JOIN trials t ON t.trial_id = r.trial_id
    JOIN studies s ON s.study_id = t.study_id
    WHERE s.study_name = :study
    ORDER BY t.number, r.seed
    """
)
_RUNS_PER_STUDY_SQL = sa.text(
    """
    SELECT s.study_name AS name, COUNT(r.run_id) AS n_runs
    FROM studies s
    JOIN trials t ON t.study_id = s.study_id
    JOIN hpo_runs r ON r.trial_id = t.trial_id
    GROUP BY s.study_name
    """
)


_MODELS_SQL = sa.text(
    """
    SELECT t.number AS trial, r.seed AS seed, m.epoch AS epoch, m.artifact_id AS artifact_id
    FROM hpo_models m
    JOIN hpo_runs r ON r.run_id = m.run_id
    JOIN trials t ON t.trial_id = r.trial_id
    JOIN studies s ON s.study_id = t.study_id
    WHERE s.study_name = :study
    ORDER BY t.number, r.seed
    """
)


_SORTS = ("trial", "param", "value")
_PRUNED_COLUMNS = ["pruned_at", "pruned_mean"]
_OBJECTIVE_COLUMNS = ["mean", "std", "ci95_low", "ci95_high", "n"]
_NOT_PARAMS = frozenset({"number", "state", *_STAT_COLUMNS, "value", *_PRUNED_COLUMNS,
                         "pareto"})


def param_columns(trials: pd.DataFrame) -> list[str]:
    """The parameter columns of a :meth:`Results.trials` frame, in order (with several
    objectives, not their ``metric.mean``, ... columns)."""
    several = "pareto" in trials.columns
    return [c for c in trials.columns if c not in _NOT_PARAMS
            and not (several and c.rpartition(".")[2] in _OBJECTIVE_COLUMNS and "." in c)]


def _sort_by(frame: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """``frame`` sorted by ``params`` (missing values last); a column mixing types (a
    categorical of numbers and words) sorts by its values' text."""
    try:
        return frame.sort_values(params, na_position="last", kind="stable")
    except TypeError:
        return frame.sort_values(params, kind="stable", key=lambda column: column.map(_mixed))


def _mixed(value: object) -> tuple:
    """A sort key for a column of several types: numbers, then text, then missing values."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return (2, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


class Results:
    """A study database read as DataFrames.

    ``storage`` is a database URL (``sqlite:///studies/x.db``, ``postgresql+psycopg://...``).
    """

    def __init__(self, storage: str) -> None:
        self.store = Store.open(storage)

    def close(self) -> None:
        """Close the database connections (``with Results(url) as r:`` does it)."""
        self.store.dispose()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def study_names(self) -> list[str]:
        """The names of every study in the database."""
        return optuna.get_all_study_names(self.store.optuna)

    def name(self, study: str | int) -> str:
        """The name of ``study``, given by name or by number (Optuna's study id)."""
        names = self.study_names()
        if study in names:
            return study
        if isinstance(study, int) or (isinstance(study, str) and study.isdigit()):
            try:
                return self.store.optuna.get_study_name_from_id(int(study))
            except KeyError:
                pass
        raise StudyNotFound(
            f"study {study!r}: not in {self.store.url}; studies there: "
            + (", ".join(names) or "none")
        )

    def _study(self, study: str | int) -> optuna.Study:
        return optuna.load_study(study_name=self.name(study), storage=self.store.optuna)

    def _matching(self, frame: pd.DataFrame, study: str | int,
                  where: dict | None) -> pd.DataFrame:
        """Rows of ``frame`` (with a ``trial`` column) whose trial has the ``where`` params."""
        if not where:
            return frame
        trials = self.trials(study, where)
        return frame[frame["trial"].isin(trials["number"])]

    def studies(self) -> pd.DataFrame:
        """One row per study: name, number (Optuna's study id: ``hpo show NUMBER --storage
        URL``), direction (one per objective, comma-separated), n_trials, n_runs."""
        summaries = optuna.get_all_study_summaries(self.store.optuna, include_best_trial=False)
        frame = pd.DataFrame(
            {
                "name": [s.study_name for s in summaries],
                "number": [self.store.optuna.get_study_id_from_name(s.study_name)
                           for s in summaries],
                "direction": [", ".join(d.name.lower() for d in s.directions)
                              for s in summaries],
                "n_trials": [s.n_trials for s in summaries],
            }
        ).astype({"name": "object", "direction": "object"})  # typed when there is no study
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_PER_STUDY_SQL, conn)
        frame = frame.merge(runs, on="name", how="left")
        frame["n_runs"] = frame["n_runs"].fillna(0).astype("int64")
        return frame

    def trials(self, study: str | int, where: dict | None = None,
               sort: str = "trial") -> pd.DataFrame:
        """One row per trial: number, state, one column per param, n, mean, var, std, sem,
        ci95_low, ci95_high, value, pruned_at, pruned_mean. ``where`` keeps the trials with
        these param values.

        With several objectives, n ... value are the first objective's, and each objective
        ``m`` (the first too) has columns ``m.mean``, ``m.std``, ``m.ci95_low``, ``m.ci95_high``
        and ``m.n``; ``pareto`` is True for the trials of the Pareto front (Optuna's
        ``study.best_trials``: COMPLETE, and no other COMPLETE trial is at least as good in
        every objective's mean and better in one).

        The statistics are over the trial's COMPLETE runs and are NaN for a trial that did not
        complete. A PRUNED trial has instead ``pruned_at`` (the epoch at which the pruner
        stopped it) and ``pruned_mean`` (the mean over its seeds of the objective at that epoch:
        the value the pruner judged, a partial result not comparable with a final ``value``).

        ``sort``: "trial" (by number), "param" (by the parameters, in column order; by number
        when there is none) or "value" (the COMPLETE trials, best value first by the study's
        direction; then the others by number). A PRUNED trial's ``value`` is Optuna's: its last
        intermediate value, i.e. ``pruned_mean``. Trials that several workers' race put on an
        already-held grid point (marked ``hpo.study.SKIPPED_ATTR``, never trained) are left out.

        Example:
            >>> r.trials("mnist-width", sort="param")[["width", "mean", "n"]]  # doctest: +SKIP
        """
        if sort not in _SORTS:
            raise QueryError.about("sort", sort, f"expected one of {', '.join(_SORTS)}")
        loaded = self._study(study)
        trials = [t for t in loaded.get_trials(deepcopy=False)
                  if SKIPPED_ATTR not in t.user_attrs]
        params = sorted({name for t in trials for name in t.params})
        several = len(loaded.directions) > 1
        objectives = _objectives(loaded) if several else []
        rows = []
        for t in trials:
            row = {"number": t.number, "state": t.state.name}
            row.update({name: t.params.get(name) for name in params})
            row.update({key: t.user_attrs.get(key) for key in _STAT_COLUMNS})
            row["value"] = t.values[0] if t.values else None
            for objective in t.user_attrs.get(OBJECTIVES_ATTR, []) if several else []:
                row.update({f"{objective['metric']}.{key}": objective.get(key)
                            for key in _OBJECTIVE_COLUMNS})
            if t.state == optuna.trial.TrialState.PRUNED:
                row["pruned_at"] = t.user_attrs.get(PRUNED_AT_ATTR, t.last_step)
                row["pruned_mean"] = t.intermediate_values.get(row["pruned_at"])
            rows.append(row)
        extra = [f"{metric}.{key}" for metric, _ in objectives for key in _OBJECTIVE_COLUMNS]
        columns = ["number", "state", *params, *_STAT_COLUMNS, "value", *_PRUNED_COLUMNS, *extra]
        frame = pd.DataFrame(rows, columns=columns)
        for column in _STAT_COLUMNS[1:] + ["value", "pruned_mean"] + extra:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        if several:  # Optuna's Pareto front of the COMPLETE trials' values (the means)
            front = {t.number for t in loaded.best_trials}
            frame["pareto"] = frame["number"].isin(front)
        for column in ("n", "pruned_at"):
            frame[column] = frame[column].astype("Int64")
        for param, value in (where or {}).items():
            if param not in params:
                raise QueryError(f"where {param} = {value!r}: not a parameter of study "
                                 f"{study!r}; parameters: {', '.join(params) or 'none'}")
            frame = frame[frame[param] == value]
        if sort == "param" and params:
            frame = _sort_by(frame, params)
        elif sort == "value":
            # COMPLETE trials by value; then the others (Optuna gives a PRUNED trial its last
            # intermediate value, a partial mean not to be ranked with the others), by number.
            ranked = frame["value"].where(frame["state"] == "COMPLETE")
            order = ranked.sort_values(
                ascending=loaded.directions[0] == optuna.study.StudyDirection.MINIMIZE,
                na_position="last", kind="stable").index
            frame = frame.loc[order]
        return frame.reset_index(drop=True)

    def epochs(self, study: str | int, where: dict | None = None) -> pd.DataFrame:
        """Long form: trial, seed, epoch, metric, value: every metric, epoch and run."""
        name = self.name(study)
        frame = self._read_epochs(name)
        frame["value"] = frame["value"].astype("float64")
        frame = frame.sort_values(_EPOCH_ORDER, ignore_index=True)
        return self._matching(frame, name, where)

    def _read_epochs(self, name: str) -> pd.DataFrame:
        database = sqlite_file(self.store.url)
        if database is not None:
            try:
                import adbc_driver_sqlite.dbapi as adbc
            except ImportError:
                adbc = None
            if adbc is not None:
                # Arrow's columnar fetch: about 4x faster than building a Python row per value.
                with adbc.connect(database) as conn, conn.cursor() as cursor:
                    cursor.execute(_EPOCHS_QUERY.format(study="?"), (name,))
                    frame = cursor.fetch_arrow_table().to_pandas()
                for column in ("trial", "seed", "epoch"):
                    frame[column] = frame[column].astype("int64")
                return frame
        with self.store.engine.connect() as conn:
            return pd.read_sql(sa.text(_EPOCHS_QUERY.format(study=":study")), conn,
                               params={"study": name})

    def runs(self, study: str | int, where: dict | None = None) -> pd.DataFrame:
        """One row per seeded run: trial, seed, state, epochs, wall_s, error, started_at,
        finished_at, and the final value of each metric: the value of the run's last recorded
        epoch of that metric, NaN when that value was not finite (a diverged run ends on NaN,
        not on its last finite value).

        ``wall_s`` is the time from the run's start to the end of its last epoch (saving its
        kept model is left out). Runs trained together in one pack (packed seeds, or trials
        packed together) overlap: each has the pack's time until it stopped, so summing
        ``wall_s`` counts a pack once per run. The time a study took is
        :meth:`elapsed` (the union of its runs' intervals, by the database's clock)."""
        name = self.name(study)
        with self.store.engine.connect() as conn:
            runs = self._matching(pd.read_sql(_RUNS_SQL, conn, params={"study": name}), name,
                                  where)
        epochs = self.epochs(name, where)
        if not epochs.empty:
            # The last epoch's row, whatever its value: groupby().last() would skip a NaN (a
            # diverged final epoch, NULL in SQLite) and show an earlier, finite value instead.
            final = (
                epochs.sort_values(["trial", "seed", "metric", "epoch"], kind="stable")
                .drop_duplicates(["trial", "seed", "metric"], keep="last")
                .pivot(index=["trial", "seed"], columns="metric", values="value")
                .reset_index()
            )
            final.columns.name = None
            runs = runs.merge(final, on=["trial", "seed"], how="left")
        runs = runs.reset_index(drop=True)
        runs["epochs"] = runs["epochs"].fillna(0).astype("int64")
        return runs

    def elapsed(self, study: str | int) -> pd.Series:
        """How long the study's runs took, by the database's clock (UTC): ``first`` (the first
        run's start), ``last`` (the last finished run's end), ``span_s`` (last − first, waits
        between runs included), ``busy_s`` (the time in which at least one run was training:
        the union of the finished runs' intervals, so runs packed together count once) and
        ``runs`` (the finished runs). NaN/NaT when no run finished.

        Example:
            >>> r.elapsed("mnist-width")["busy_s"]  # doctest: +SKIP
        """
        name = self.name(study)
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_SQL, conn, params={"study": name})
        runs = runs.dropna(subset=["started_at", "finished_at"])
        start = pd.to_datetime(runs["started_at"]).sort_values()
        end = pd.to_datetime(runs["finished_at"]).reindex(start.index)
        busy, reach = 0.0, None
        for s, e in zip(start, end, strict=True):  # the union of [start, end], by start
            if reach is None or s > reach:
                busy += (e - s).total_seconds()
                reach = e
            elif e > reach:
                busy += (e - reach).total_seconds()
                reach = e
        first = start.min() if len(start) else pd.NaT
        last = end.max() if len(end) else pd.NaT
        return pd.Series({"first": first, "last": last,
                          "span_s": (last - first).total_seconds() if len(start) else np.nan,
                          "busy_s": busy if len(start) else np.nan, "runs": len(start)})

    def curves(self, study: str | int, metric: str, where: dict | None = None) -> pd.DataFrame:
        """Per trial and epoch, ``metric`` across seeds: trial, epoch, n, mean, std, sem,
        ci95_low, ci95_high (Student t; spread undefined, NaN, for n < 2).

        The sample at each epoch is every run that recorded a finite value of ``metric`` there,
        whatever the run's state (a FAIL or PRUNED run counts for the epochs it ran; a NaN value
        is not counted): ``n`` says how many. These are learning curves, not the trial's
        statistics; for those (COMPLETE runs only) see :meth:`seed_table`."""
        epochs = self.epochs(study, where)
        values = epochs[epochs["metric"] == metric]
        if values.empty:
            known = ", ".join(sorted(epochs["metric"].unique()))
            raise MetricNotFound(f"metric {metric!r}: not recorded in study {study!r}; recorded: "
                             f"{known or 'none'}")
        frame = (values.groupby(["trial", "epoch"])["value"]
                 .agg(n="count", mean="mean", std="std").reset_index())
        frame["sem"] = frame["std"] / np.sqrt(frame["n"])
        half = scipy_stats.t.ppf(0.975, (frame["n"] - 1).clip(lower=1)) * frame["sem"]
        frame["ci95_low"], frame["ci95_high"] = frame["mean"] - half, frame["mean"] + half
        return frame

    def seed_table(self, study: str | int, metric: str | None = None, *,
                   states: Sequence[str] | None = ("COMPLETE",)) -> pd.DataFrame:
        """One row per (trial, seed): trial, seed, state (the run's), value: ``metric`` (default:
        the study's objective) of that run reduced as the study reduces its objective (last or
        best epoch, :func:`hpo.stats.reduce_history`).

        By default only COMPLETE runs: the sample of the trial's own statistics (its value, n,
        std, CI), of :meth:`compare`, :meth:`compare_all` and the ``param`` and ``seeds`` plots.
        A FAIL run (diverged or raised), a PRUNED one (its trial was pruned) or one still RUNNING
        or INTERRUPTED is left out; :meth:`left_out_seeds` lists them. ``states=None`` keeps every
        run, ``states=("COMPLETE", "PRUNED")`` a pruned trial's partial seeds too. A run with no
        recorded value of ``metric`` has no row. One read of the study's epochs and runs.

        Example:
            >>> r.seed_table("mnist-width").head(2)  # doctest: +SKIP
               trial  seed     state   value
            0      0     0  COMPLETE  0.8915
            1      0     1  COMPLETE  0.8870
        """
        name = self.name(study)
        metric = metric or self.sweep_settings(name).get("study.objective", "val_accuracy")
        direction, reduce = self._aim(name, metric)
        if metric in RUN_MEASURES:
            frame = self._measure_table(name, metric)
        else:
            epochs = self.epochs(name)  # already sorted by trial, seed, epoch
            values = epochs[epochs["metric"] == metric]
            if values.empty and not epochs.empty:
                known = ", ".join(sorted(epochs["metric"].unique()))
                raise MetricNotFound(f"metric {metric!r}: not recorded in study {name!r}; "
                                     f"recorded: {known}")
            rows = [
                (int(trial), int(seed), stats.reduce_history(group["value"].tolist(), reduce,
                                                                direction))
                for (trial, seed), group in values.groupby(["trial", "seed"])
            ]
            frame = pd.DataFrame(rows, columns=["trial", "seed", "value"])
        frame = frame.merge(self._run_states(name), on=["trial", "seed"], how="left")
        if states is not None:
            frame = frame[frame["state"].isin(list(states))]
        return frame[["trial", "seed", "state", "value"]].reset_index(drop=True)

    def _aim(self, name: str, metric: str) -> tuple[str, str]:
        """(direction, reduce) for ``metric``: an objective's own, else the first objective's."""
        sweep = self.sweep_settings(name)
        objective = {o["metric"]: o for o in sweep.get("study.objectives", [])}.get(metric, {})
        reduce = "run" if metric in RUN_MEASURES else (
            objective.get("reduce") or sweep.get("study.reduce", "last"))
        return objective.get("direction") or self.direction(name), reduce

    def _measure_table(self, name: str, metric: str) -> pd.DataFrame:
        """A run measure per (trial, seed), as the objective computed it: ``epoch_seconds``
        is the run's wall_s over its epochs; ``params`` the trial's (the same for each seed),
        kept with its statistics. Runs without the value have no row."""
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_SQL, conn, params={"study": name})
        if metric == "epoch_seconds":
            runs["value"] = runs["wall_s"] / runs["epochs"]
        else:
            loaded = self._study(name)
            counted = {}
            single = loaded.user_attrs.get(SWEEP_ATTR, {}).get("study.objective") == metric
            for t in loaded.get_trials(deepcopy=False):
                found = [o for o in t.user_attrs.get(OBJECTIVES_ATTR, [])
                         if o["metric"] == metric]
                if found:
                    counted[t.number] = found[0]["mean"]
                elif single:
                    counted[t.number] = t.user_attrs.get("mean")
            if not counted:
                raise MetricNotFound(f"metric {metric!r}: not an objective of study {name!r}, "
                                     "so its models' parameters were not counted")
            runs["value"] = runs["trial"].map(counted)
        runs = runs[runs["value"].notna()]
        return runs[["trial", "seed", "value"]].astype({"value": "float64"})

    def left_out_seeds(self, study: str | int, trials: Sequence[int] | None = None
                       ) -> pd.DataFrame:
        """The runs :meth:`seed_table` leaves out by default: trial, seed, state, error of every
        run whose state is not COMPLETE (FAIL, PRUNED, RUNNING, INTERRUPTED), of ``trials`` or of
        all trials. The trial's statistics and every comparison are computed without them."""
        name = self.name(study)
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_SQL, conn, params={"study": name})
        runs = runs[runs["state"] != "COMPLETE"]
        if trials is not None:
            runs = runs[runs["trial"].isin(list(trials))]
        return runs[["trial", "seed", "state", "error"]].reset_index(drop=True)

    def _run_states(self, name: str) -> pd.DataFrame:
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_SQL, conn, params={"study": name})
        return runs[["trial", "seed", "state"]]

    def seed_values(self, study: str | int, trial: int, metric: str | None = None,
                    table: pd.DataFrame | None = None) -> dict[int, float]:
        """Seed → reduced value of ``trial``'s COMPLETE runs (see :meth:`seed_table`; pass
        ``table`` to reuse one when asking for several trials)."""
        table = self.seed_table(study, metric) if table is None else table
        values = table[table["trial"] == trial]
        if values.empty:
            numbers = self.trials(study)["number"].tolist()
            if trial not in numbers:
                raise QueryError(f"trial {trial}: not a trial of study {self.name(study)!r}; "
                                 f"trials: {', '.join(map(str, numbers)) or 'none'}")
            raise QueryError(f"trial {trial} of study {self.name(study)!r}: no COMPLETE run "
                             f"with a value of {metric or 'the objective'!r} (runs that are not "
                             "COMPLETE are left out of statistics)")
        return dict(zip(values["seed"], values["value"], strict=True))

    def compare(self, study: str | int, a: int, b: int, metric: str | None = None) -> pd.Series:
        """Trial ``a`` against trial ``b`` on their COMPLETE runs' reduced values
        (:meth:`seed_table`): Welch's and the paired t-test (scipy.stats), effect sizes and CIs
        (see :func:`hpo.stats.compare`). :meth:`left_out_seeds` names the runs left out."""
        table = self.seed_table(study, metric)
        result = stats.compare(self.seed_values(study, a, metric, table),
                                  self.seed_values(study, b, metric, table))
        return pd.Series({"trial_a": a, "trial_b": b, **result})

    def direction(self, study: str | int) -> str:
        """The study's direction: "maximize" or "minimize" (its first objective's)."""
        return self._study(study).directions[0].name.lower()

    def objectives(self, study: str | int) -> list[tuple[str, str]]:
        """The study's objectives, in order: (metric, direction) each."""
        return _objectives(self._study(study))

    def pareto(self, study: str | int) -> pd.DataFrame:
        """The trials of the Pareto front (:meth:`trials` rows with ``pareto`` True), sorted
        by the first objective's mean, best first.

        Raises:
            QueryError: the study has one objective (its front is its best trial).
        """
        name = self.name(study)
        frame = self.trials(name)
        if "pareto" not in frame:
            raise QueryError(f"study {name!r}: one objective; a Pareto front needs several "
                             "([study] objectives)")
        front = frame[frame["pareto"]]
        return front.sort_values("value", ascending=self.direction(name) == "minimize",
                                 kind="stable").reset_index(drop=True)

    def best_trial(self, study: str | int) -> int:
        """The number of the study's COMPLETE trial with the best value (by its direction)."""
        ranked = self.trials(study, sort="value")
        complete = ranked[(ranked["state"] == "COMPLETE") & ranked["value"].notna()]
        if complete.empty:
            raise QueryError(f"study {self.name(study)!r}: no COMPLETE trial with a value")
        return int(complete["number"].iloc[0])

    def compare_studies(self, a: str | int, b: str | int, *, trial_a: int | None = None,
                        trial_b: int | None = None, metric: str | None = None,
                        other: Results | None = None) -> pd.Series:
        """A trial of study ``a`` against a trial of study ``b`` (of this database, or of
        ``other``'s): each study's best trial (:meth:`best_trial`) unless one is named.

        The sample: each trial's COMPLETE runs, ``metric`` (default: ``a``'s objective)
        reduced per seed as its own study reduces its objective (:meth:`seed_table`). The test
        (:func:`hpo.stats.difference`): the paired t-test by seed (``scipy.stats.ttest_rel``)
        on the seeds both completed when there are at least 2 — the studies ran the same seeds
        when their sweep files share ``[protocol] seed`` and ``repeats`` —, else Welch's t-test
        (``ttest_ind(equal_var=False)``). No correction: one comparison.

        Fields: study_a, trial_a, study_b, trial_b, metric, reduce_a, reduce_b, n_a, mean_a,
        std_a, ci95_low_a, ci95_high_a (and the same for b; all of each trial's COMPLETE
        seeds), test ("paired" or "welch"), n (paired: the common seeds the test used;
        Welch: n_a), diff (a − b; paired: the mean per-seed difference over the common seeds),
        diff_ci95_low, diff_ci95_high, p (two-sided), effect ("d_z": mean difference ÷ std of
        the differences, when paired; "cohens_d": difference of means ÷ pooled std, Welch),
        effect_size, untestable (why not, or None).

        Raises:
            MetricNotFound: a study does not record ``metric``.

        Example:
            >>> r.compare_studies("mnist-q2-mse-sgd-20ep", "mnist-q4-mse-adam")  # doctest: +SKIP
        """
        other = other or self
        name_a, name_b = self.name(a), other.name(b)
        metric = metric or self.sweep_settings(name_a).get("study.objective", "val_accuracy")
        sides = {}
        for side, results, name, trial in (("a", self, name_a, trial_a),
                                           ("b", other, name_b, trial_b)):
            table = results.seed_table(name, metric)  # raises MetricNotFound
            trial = results.best_trial(name) if trial is None else trial
            reduce = results.sweep_settings(name).get("study.reduce", "last")
            sides[side] = (trial, results.seed_values(name, trial, metric, table), reduce)
        (ta, va, ra), (tb, vb, rb) = sides["a"], sides["b"]
        d = stats.difference(va, vb)
        both = stats.compare(va, vb)  # each side's summary, and the effect sizes
        row: dict = {"study_a": name_a, "trial_a": ta, "study_b": name_b, "trial_b": tb,
                     "metric": metric, "reduce_a": ra, "reduce_b": rb}
        row.update({f"{key}_{side}": both[f"{key}_{side}"] for side in ("a", "b")
                    for key in ("n", "mean", "std", "ci95_low", "ci95_high")})
        paired = d.test == "paired"
        row.update({"test": d.test, "n": d.n, "diff": d.diff, "diff_ci95_low": d.ci95_low,
                    "diff_ci95_high": d.ci95_high, "p": d.p,
                    "effect": "d_z" if paired else "cohens_d",
                    "effect_size": both["cohens_dz"] if paired else both["cohens_d"],
                    "untestable": d.untestable})
        return pd.Series(row)

    def compare_all(self, study: str | int, metric: str | None = None,
                    alpha: float = stats.ALPHA, direction: str | None = None) -> pd.DataFrame:
        """Every COMPLETE trial but the best, tested against the best: one row per trial.

        The sample: each COMPLETE trial's COMPLETE runs, ``metric`` (default: the objective)
        reduced per seed as the study reduces its objective (:meth:`seed_table`). The best is the
        trial with the best mean by ``direction`` (default: that objective's, else the first's;
        give "minimize" or "maximize" for another metric, e.g. a loss); for the objective it is
        the trial with the best value in :meth:`trials`. Each other trial is compared with it by
        :func:`hpo.stats.compare_to_best`: the paired t-test by seed (``scipy.stats.ttest_rel``)
        on the seeds both completed when there are at least 2, else Welch's t-test
        (``ttest_ind(equal_var=False)``); Holm's correction (statsmodels ``multipletests``) over
        the comparisons that could be tested, at ``alpha``.

        Columns: trial, best (the trial compared with), n and n_best (the seeds each contributed:
        the common seeds when paired), diff (trial mean − best mean, over the paired seeds when
        paired), diff_ci95_low, diff_ci95_high (95 % CI of diff: paired t, or Welch with the
        Welch–Satterthwaite df), test ("paired" or "welch"), p (two-sided), p_holm, verdict
        ("worse (p_holm=…)", "better (…)", "not distinguishable (…)" or "not testable (why)",
        where p, p_holm and the CI are NaN). ``frame.attrs`` holds best, alpha, metric,
        direction and reduce. No rows when no COMPLETE trial has a finite mean.

        Example:
            >>> r.compare_all("mnist-width", alpha=0.01)  # doctest: +SKIP
        """
        try:
            stats.check_alpha(alpha)
        except ValueError as exc:
            raise QueryError(str(exc)) from None
        name = self.name(study)
        metric = metric or self.sweep_settings(name).get("study.objective", "val_accuracy")
        aim, reduce = self._aim(name, metric)
        if direction is None:
            direction = aim
        elif direction not in ("maximize", "minimize"):
            raise QueryError(f"direction = {direction!r}: expected maximize or minimize")
        trials = self.trials(name)
        complete = trials.loc[trials["state"] == "COMPLETE", "number"].tolist()
        table = self.seed_table(name, metric)
        samples = {int(t): dict(zip(g["seed"].tolist(), g["value"].tolist(), strict=True))
                   for t, g in table[table["trial"].isin(complete)].groupby("trial")}
        rows = stats.compare_to_best(samples, direction, alpha)
        frame = pd.DataFrame(
            [{"trial": r.trial, "best": r.best, "n": r.difference.n,
              "n_best": r.difference.n_other, "diff": r.difference.diff,
              "diff_ci95_low": r.difference.ci95_low, "diff_ci95_high": r.difference.ci95_high,
              "test": r.difference.test, "p": r.difference.p, "p_holm": r.p_holm,
              "verdict": r.verdict} for r in rows],
            columns=_COMPARE_ALL_COLUMNS,
        )
        frame.attrs.update(best=stats.best_trial(samples, direction), alpha=alpha,
                           metric=metric, direction=direction, reduce=reduce)
        return frame

    def models(self, study: str | int) -> pd.DataFrame:
        """The kept models (``[train] keep_models``): one row per kept run, by trial and seed:
        trial, seed, epoch (of its weights: the last, or the one early stopping restored),
        artifact_id, and path (the file, for a folder store; None for others).

        Example:
            >>> r.models("mnist-q6")  # doctest: +SKIP
               trial  seed  epoch                           artifact_id                  path
            0      3     0      5  6f1c...                               studies/mnist-q6/...
        """
        name = self.name(study)
        if "hpo_models" not in self.store.table_names():  # a database from an earlier hpo
            rows = []
        else:
            with self.store.engine.connect() as conn:
                rows = conn.execute(_MODELS_SQL, {"study": name}).all()
        frame = pd.DataFrame(rows, columns=["trial", "seed", "epoch", "artifact_id"])
        # The stored file has no .keras suffix: load_model and export_models copy it to one.
        store = self.artifact_store(name) if rows else None
        frame["path"] = [kept_models.file_path(store, a) for a in frame["artifact_id"]]
        return frame

    def load_model(self, study: str | int, trial: int, seed: int):
        """The kept model of ``trial``'s run of ``seed``, loaded with
        ``keras.saving.load_model`` (compiled with the trial's optimizer, loss and metrics).

        Raises:
            QueryError: that run has no kept model (``keep_models``, or not the best trial).
        """
        import keras

        models = self.models(study)
        row = models[(models["trial"] == trial) & (models["seed"] == seed)]
        if row.empty:
            kept = ", ".join(f"{t}:{s}" for t, s in zip(models["trial"], models["seed"],
                                                        strict=True)) or "none"
            raise QueryError(f"trial {trial} seed {seed}: no kept model in study "
                             f"{self.name(study)!r}; kept (trial:seed): {kept}")
        with tempfile.TemporaryDirectory(prefix="hpo-model-") as folder:
            path = self._download(study, row["artifact_id"].iloc[0], folder, "model.keras")
            return keras.saving.load_model(path)

    def artifact_store(self, study: str | int):
        """The Optuna artifact store holding ``study``'s kept models (``[study] artifacts``,
        else the default beside the database; see :mod:`hpo.kept_models`)."""
        return kept_models.open_store(
            kept_models.study_location(self._study(study), self.store.url))

    def _download(self, study: str | int, artifact_id: str, folder: str, filename: str) -> str:
        path = os.path.join(folder, filename)
        optuna.artifacts.download_artifact(artifact_store=self.artifact_store(study),
                                           artifact_id=artifact_id, file_path=path)
        return path

    def export_models(self, study: str | int, folder: str) -> pd.DataFrame:
        """Copy every kept model of ``study`` to ``folder`` as
        ``trial-<n>-seed-<s>-epoch-<e>.keras``; return :meth:`models` with a ``file`` column."""
        models = self.models(study)
        os.makedirs(folder, exist_ok=True)
        files = []
        for row in models.itertuples():
            filename = f"trial-{row.trial}-seed-{row.seed}-epoch-{row.epoch}.keras"
            files.append(self._download(study, row.artifact_id, folder, filename))
        return models.assign(file=files)

    def export(self, study: str | int, what: str, fmt: str, path: str) -> pd.DataFrame:
        """Write ``trials``, ``runs`` or ``epochs`` of ``study`` as csv, parquet or json."""
        tables = {"trials": self.trials, "runs": self.runs, "epochs": self.epochs}
        if what not in tables:
            raise QueryError.about("what", what, f"expected one of {', '.join(tables)}")
        if fmt not in ("csv", "parquet", "json"):
            raise QueryError.about("fmt", fmt, "expected one of csv, parquet, json")
        frame = tables[what](study)
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "json":
            frame.to_json(path, orient="records", indent=1, date_format="iso")
        else:
            try:
                frame.to_parquet(path, index=False)
            except ImportError as exc:
                raise QueryError.about("fmt", fmt, "needs pyarrow (pip install pyarrow)") from exc
        return frame

    def sweep_settings(self, study: str | int) -> dict:
        """The sweep settings stored with the study (``hpo.sweep`` user attribute)."""
        stored = self._study(study).user_attrs.get(SWEEP_ATTR, {})
        return json.loads(json.dumps(stored))


def _objectives(loaded: optuna.Study) -> list[tuple[str, str]]:
    settings = loaded.user_attrs.get(SWEEP_ATTR, {})
    stored = settings.get("study.objectives") or [
        {"metric": settings.get("study.objective", "value"),
         "direction": loaded.directions[0].name.lower()}]
    return [(o["metric"], o["direction"]) for o in stored]


def versus_legend(versus: pd.DataFrame) -> list[str]:
    """What :meth:`Results.compare_all` (``hpo show``'s "vs best" column) computed, in
    words: which test, over which sample, which correction."""
    s = versus.attrs
    if s["best"] is None:
        return [f"no COMPLETE trial with per-seed values of {s['metric']}: nothing to compare"]
    highest = "highest" if s["direction"] == "maximize" else "lowest"
    per_seed = ("one value per run" if s["reduce"] == "run"
                else f"{s['reduce']} epoch per seed")
    lines = [f"★ best: trial {s['best']}, the {highest} mean {s['metric']} ({per_seed}) "
             "over its COMPLETE runs (runs not COMPLETE are left out of every "
             "statistic here)"]
    if versus.empty:
        return lines + ["vs best: no other COMPLETE trial to test"]
    paired = int((versus["test"] == "paired").sum())
    welch = len(versus) - paired
    tested = int(versus["p"].notna().sum())
    tests = []
    if paired:
        tests.append("paired t-test by seed on the seeds both completed (scipy.stats.ttest_rel): "
                     f"{paired} trial{'s' if paired > 1 else ''}")
    if welch:
        tests.append("Welch's t-test, fewer than 2 seeds in common (scipy.stats.ttest_ind, "
                     f"equal_var=False): {welch} trial{'s' if welch > 1 else ''}")
    lines.append(f"vs best: each other COMPLETE trial against trial {s['best']}, two-sided: "
                 + "; ".join(tests) + f"; Holm's correction over the {tested} tested "
                 f"(statsmodels multipletests), α = {s['alpha']:g}: worse/better if p_holm ≤ α, "
                 "else not distinguishable (no evidence of a difference, not proof of "
                 "equality); not testable: a NaN value, fewer than 2 seeds or zero variance")
    return lines


def left_out_lines(left_out: pd.DataFrame) -> list[str]:
    """One line per trial naming its seeds whose runs were left out of the statistics."""
    lines = []
    for trial, runs in left_out.groupby("trial"):
        seeds = ", ".join(f"seed {seed} ({state})"
                          for seed, state in zip(runs["seed"], runs["state"], strict=True))
        lines.append(f"left out of the statistics (runs not COMPLETE): trial {trial}: {seeds}")
    return lines
