"""Reading a study database into pandas: studies, trials, seeded runs, per-epoch metrics.

Example:
    >>> from hpo import Results
    >>> r = Results("sqlite:///studies/mnist-width.db")  # doctest: +SKIP
    >>> r.trials("mnist-width")[["width", "mean", "ci95_low", "ci95_high"]]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import optuna
import pandas as pd
import sqlalchemy as sa
from scipy import stats as scipy_stats

from hpo import stats
from hpo.errors import MetricNotFound, QueryError, StudyNotFound
from hpo.stats import Summary
from hpo.store import Store
from hpo.study import SKIPPED_ATTR, SWEEP_ATTR

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
        URL``), direction, n_trials, n_runs."""
        summaries = optuna.get_all_study_summaries(self.store.optuna, include_best_trial=False)
        frame = pd.DataFrame(
            {
                "name": [s.study_name for s in summaries],
                "number": [self.store.optuna.get_study_id_from_name(s.study_name)
                           for s in summaries],
                "direction": [s.direction.name.lower() for s in summaries],
                "n_trials": [s.n_trials for s in summaries],
            }
        ).astype({"name": "object", "direction": "object"})  # typed when there is no study
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_PER_STUDY_SQL, conn)
        frame = frame.merge(runs, on="name", how="left")
        frame["n_runs"] = frame["n_runs"].fillna(0).astype("int64")
        return frame

    def trials(self, study: str | int, where: dict | None = None) -> pd.DataFrame:
        """One row per trial: number, state, one column per param, n, mean, var, std, sem,
        ci95_low, ci95_high, value. ``where`` keeps the trials with these param values.

        Trials that several workers' race put on an already-held grid point (marked
        ``hpo.study.SKIPPED_ATTR``, never trained) are left out."""
        trials = [t for t in self._study(study).get_trials(deepcopy=False)
                  if SKIPPED_ATTR not in t.user_attrs]
        params = sorted({name for t in trials for name in t.params})
        rows = []
        for t in trials:
            row = {"number": t.number, "state": t.state.name}
            row.update({name: t.params.get(name) for name in params})
            row.update({key: t.user_attrs.get(key) for key in _STAT_COLUMNS})
            row["value"] = t.value
            rows.append(row)
        columns = ["number", "state", *params, *_STAT_COLUMNS, "value"]
        frame = pd.DataFrame(rows, columns=columns)
        for column in _STAT_COLUMNS[1:] + ["value"]:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        frame["n"] = frame["n"].astype("Int64")
        for param, value in (where or {}).items():
            if param not in params:
                raise QueryError(f"where {param} = {value!r}: not a parameter of study "
                                 f"{study!r}; parameters: {', '.join(params) or 'none'}")
            frame = frame[frame[param] == value]
        return frame.reset_index(drop=True)

    def epochs(self, study: str | int, where: dict | None = None) -> pd.DataFrame:
        """Long form: trial, seed, epoch, metric, value: every metric, epoch and run."""
        name = self.name(study)
        frame = self._read_epochs(name)
        frame["value"] = frame["value"].astype("float64")
        frame = frame.sort_values(_EPOCH_ORDER, ignore_index=True)
        return self._matching(frame, name, where)

    def _read_epochs(self, name: str) -> pd.DataFrame:
        url = sa.engine.make_url(self.store.url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            try:
                import adbc_driver_sqlite.dbapi as adbc
            except ImportError:
                adbc = None
            if adbc is not None:
                # Arrow's columnar fetch: about 4x faster than building a Python row per value.
                with adbc.connect(url.database) as conn, conn.cursor() as cursor:
                    cursor.execute(_EPOCHS_QUERY.format(study="?"), (name,))
                    frame = cursor.fetch_arrow_table().to_pandas()
                for column in ("trial", "seed", "epoch"):
                    frame[column] = frame[column].astype("int64")
                return frame
        with self.store.engine.connect() as conn:
            return pd.read_sql(sa.text(_EPOCHS_QUERY.format(study=":study")), conn,
                               params={"study": name})

    def runs(self, study: str | int, where: dict | None = None) -> pd.DataFrame:
        """One row per seeded run: trial, seed, state, epochs, wall_s, error, and the final value
        of each metric: the value of the run's last recorded epoch of that metric, NaN when that
        value was not finite (a diverged run ends on NaN, not on its last finite value)."""
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
        sweep = self.sweep_settings(name)
        direction = self._study(name).direction.name.lower()
        metric = metric or sweep.get("study.objective", "val_accuracy")
        reduce = sweep.get("study.reduce", "last")
        epochs = self.epochs(name)  # already sorted by trial, seed, epoch
        values = epochs[epochs["metric"] == metric]
        if values.empty and not epochs.empty:
            known = ", ".join(sorted(epochs["metric"].unique()))
            raise MetricNotFound(f"metric {metric!r}: not recorded in study {name!r}; recorded: "
                             f"{known}")
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

    def compare_all(self, study: str | int, metric: str | None = None,
                    alpha: float = stats.ALPHA, direction: str | None = None) -> pd.DataFrame:
        """Every COMPLETE trial but the best, tested against the best: one row per trial.

        The sample: each COMPLETE trial's COMPLETE runs, ``metric`` (default: the objective)
        reduced per seed as the study reduces its objective (:meth:`seed_table`). The best is the
        trial with the best mean by ``direction`` (default: the study's, which is its objective's;
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
        sweep = self.sweep_settings(name)
        metric = metric or sweep.get("study.objective", "val_accuracy")
        if direction is None:
            direction = self._study(name).direction.name.lower()
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
                           metric=metric, direction=direction,
                           reduce=sweep.get("study.reduce", "last"))
        return frame

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
