"""Edits of a copy of a real study database, for cases a short real sweep does not produce."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from hpo.stats import summarize


def copy_study(url: str, directory: Path) -> str:
    """A consistent copy of the SQLite study at ``url`` (SQLite's backup API: WAL included)."""
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    path = directory / "copy.db"
    target = sqlite3.connect(path)
    with target:
        source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{path}"


def fail_seed(url: str, study: str, trial: int, seed: int, *, diverged: bool = True) -> None:
    """Make (trial, seed)'s run FAIL: a diverged run (its last epoch's values NULL, SQLite's NaN;
    error "loss became NaN"), or with ``diverged=False`` one that raised after its last epoch
    (values kept). Store the trial's statistics over its remaining COMPLETE seeds, as the runner
    does when ``min_repeats`` allows the failure (user attributes n … ci95_high, value). The
    study reduces its objective to the last epoch."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"))
    with conn:
        trial_id, = conn.execute(
            "SELECT t.trial_id FROM trials t JOIN studies s ON s.study_id = t.study_id "
            "WHERE s.study_name = ? AND t.number = ?", (study, trial)).fetchone()
        run_id, = conn.execute("SELECT run_id FROM hpo_runs WHERE trial_id = ? AND seed = ?",
                               (trial_id, seed)).fetchone()
        error = "loss became NaN" if diverged else "RuntimeError: raised after training"
        conn.execute("UPDATE hpo_runs SET state = 'FAIL', error = ? WHERE run_id = ?",
                     (error, run_id))
        if diverged:
            conn.execute("UPDATE hpo_epochs SET value = NULL WHERE run_id = ? AND epoch = "
                         "(SELECT MAX(epoch) FROM hpo_epochs WHERE run_id = ?)",
                         (run_id, run_id))
        objective = json.loads(conn.execute(
            "SELECT a.value_json FROM study_user_attributes a JOIN studies s "
            "ON s.study_id = a.study_id WHERE s.study_name = ? AND a.key = 'hpo.sweep'",
            (study,)).fetchone()[0])["study.objective"]
        values = [v for v, in conn.execute(
            "SELECT e.value FROM hpo_epochs e JOIN hpo_runs r ON r.run_id = e.run_id "
            "WHERE r.trial_id = ? AND r.state = 'COMPLETE' AND e.metric = ? AND e.epoch = "
            "(SELECT MAX(epoch) FROM hpo_epochs WHERE run_id = r.run_id) ORDER BY r.seed",
            (trial_id, objective))]
        summary = summarize(values)
        for key, value in summary.as_dict().items():
            conn.execute("UPDATE trial_user_attributes SET value_json = ? "
                         "WHERE trial_id = ? AND key = ?", (json.dumps(value), trial_id, key))
        conn.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                     "VALUES (?, 'failed_seeds', ?)", (trial_id, json.dumps([seed])))
        conn.execute("UPDATE trial_values SET value = ? WHERE trial_id = ?",
                     (summary.mean, trial_id))
    conn.close()
