"""Reading a study database into pandas: studies, trials, seeded runs, per-epoch metrics.

Example:
    >>> from hpo import Results
    >>> r = Results("sqlite:///studies/mnist-width.db")  # doctest: +SKIP
    >>> r.trials("mnist-width")[["width", "mean", "ci95_low", "ci95_high"]]  # doctest: +SKIP
"""

from __future__ import annotations

import optuna
import pandas as pd
import sqlalchemy as sa

from hpo.errors import SweepError
from hpo.protocol import Summary
from hpo.store import Store

_STAT_COLUMNS = [f for f in Summary.__dataclass_fields__]

_EPOCHS_SQL = sa.text(
    """
    SELECT t.number AS trial, r.seed AS seed, e.epoch AS epoch, e.metric AS metric,
           e.value AS value
    FROM hpo_epochs e
    JOIN hpo_runs r ON r.run_id = e.run_id
    JOIN trials t ON t.trial_id = r.trial_id
    JOIN studies s ON s.study_id = t.study_id
    WHERE s.study_name = :study
    ORDER BY t.number, r.seed, e.epoch, e.metric
    """
)
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
        self.store.dispose()

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def study_names(self) -> list[str]:
        return optuna.get_all_study_names(self.store.optuna)

    def _study(self, study: str) -> optuna.Study:
        names = self.study_names()
        if study not in names:
            raise SweepError(
                f"study {study!r}: not in {self.store.url}; studies there: "
                + (", ".join(names) or "none")
            )
        return optuna.load_study(study_name=study, storage=self.store.optuna)

    def studies(self) -> pd.DataFrame:
        """One row per study: name, direction, n_trials, n_runs."""
        summaries = optuna.get_all_study_summaries(self.store.optuna, include_best_trial=False)
        frame = pd.DataFrame(
            {
                "name": [s.study_name for s in summaries],
                "direction": [s.direction.name.lower() for s in summaries],
                "n_trials": [s.n_trials for s in summaries],
            }
        )
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_PER_STUDY_SQL, conn)
        frame = frame.merge(runs, on="name", how="left")
        frame["n_runs"] = frame["n_runs"].fillna(0).astype("int64")
        return frame

    def trials(self, study: str) -> pd.DataFrame:
        """One row per trial: number, state, one column per param, n, mean, var, std, sem,
        ci95_low, ci95_high, value."""
        trials = self._study(study).get_trials(deepcopy=False)
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
        return frame

    def epochs(self, study: str) -> pd.DataFrame:
        """Long form: trial, seed, epoch, metric, value: every metric, epoch and run."""
        self._study(study)
        with self.store.engine.connect() as conn:
            frame = pd.read_sql(_EPOCHS_SQL, conn, params={"study": study})
        frame["value"] = frame["value"].astype("float64")
        return frame

    def runs(self, study: str) -> pd.DataFrame:
        """One row per seeded run: trial, seed, state, epochs, wall_s, error, and the final value
        of each metric."""
        self._study(study)
        with self.store.engine.connect() as conn:
            runs = pd.read_sql(_RUNS_SQL, conn, params={"study": study})
        epochs = self.epochs(study)
        if not epochs.empty:
            final = (
                epochs.sort_values("epoch")
                .groupby(["trial", "seed", "metric"])["value"]
                .last()
                .unstack("metric")
                .reset_index()
            )
            final.columns.name = None
            runs = runs.merge(final, on=["trial", "seed"], how="left")
        runs["epochs"] = runs["epochs"].fillna(0).astype("int64")
        return runs
