"""Kept models (``[train] keep_models``): stored as Optuna artifacts, recorded, pruned, loaded.

The round trip is the issue's own check: a kept model, loaded with plain
``keras.saving.load_model`` and evaluated on its seed's validation split, gives the
``val_accuracy`` recorded for the epoch its weights are from. Packed on TensorFlow here (the
shared ``small_study``), solo with early stopping restoring an earlier epoch here, and both on
JAX in tests/training/test_backends.py.
"""

from __future__ import annotations

import os

import optuna
import pytest
import sqlalchemy as sa

from hpo import Results, parse_sweep, run_sweep
from hpo.cli import main
from hpo.kept_models import KEEPS_MODELS_ATTR, ModelKeeper, location
from hpo.store.lease import Leases
from hpo.store.recorder import Recorder

from conftest import SMALL_SWEEP, kept_model_checks


def artifact_entries(url: str) -> dict[int, set[str]]:
    """Optuna's record of each trial's artifacts (what optuna-dashboard lists), by trial id."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT trial_id, key FROM trial_system_attributes "
                                    "WHERE key LIKE 'artifacts:%'").all()
    engine.dispose()
    found: dict[int, set[str]] = {}
    for trial_id, key in rows:
        found.setdefault(trial_id, set()).add(key.removeprefix("artifacts:"))
    return found


def test_the_best_trials_packed_models_are_kept_and_give_their_recorded_accuracy(small_study):
    sweep, url = small_study
    with Results(url) as r:
        models, trials = r.models("small"), r.trials("small")
    best = int(trials.loc[trials["value"].idxmax(), "number"])
    assert sorted(zip(models["trial"], models["seed"], strict=True)) == [
        (best, s) for s in (0, 1, 2)]
    assert (models["epoch"] == sweep.train.epochs).all()
    folder = location(url, "small")
    assert sorted(os.listdir(folder)) == sorted(models["artifact_id"])  # the others removed
    assert all(p == os.path.join(folder, a) for p, a in zip(models["path"],
                                                           models["artifact_id"], strict=True))
    assert [set(ids) for ids in artifact_entries(url).values()] == [set(models["artifact_id"])]
    for check in kept_model_checks(url, "small", sweep):
        assert check["evaluated"] == pytest.approx(check["recorded"], abs=1e-6), check


STORE_FUNCTION = """
import optuna

def make():
    return optuna.artifacts.FileSystemArtifactStore({folder!r})
"""


def test_solo_runs_keep_the_weights_early_stopping_restored(tmp_path, mnist_data, monkeypatch):
    # Plain SGD at a high rate overshoots: validation accuracy falls back, early stopping stops
    # the run and restores an earlier epoch, which is the model kept. The store is a user's
    # function's (remembered on the study for Results).
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "user_store.py").write_text(STORE_FUNCTION.format(folder=str(tmp_path /
                                                                             "elsewhere")))
    monkeypatch.syspath_prepend(str(tmp_path))
    sweep = parse_sweep(SMALL_SWEEP, [
        "protocol.pack=false", "protocol.repeats=2", "search.space.width=[16]",
        "train.epochs=5", "train.optimizer='sgd'", "train.learning_rate=1.5",
        "train.keep_models='all'", "study.artifacts='user_store:make'",
        "train.early_stopping={monitor='val_accuracy', patience=1, restore_best_weights=true}"])
    url = f"sqlite:///{tmp_path / 'solo.db'}"
    run_sweep(sweep, storage=url)
    with Results(url) as r:
        models, epochs = r.models("small"), r.epochs("small")
    assert sorted(models["seed"]) == [0, 1]
    assert sorted(os.listdir(tmp_path / "elsewhere")) == sorted(models["artifact_id"])
    assert not (tmp_path / "small").exists()  # not the default folder
    restored_early = 0
    for row in models.itertuples():
        curve = epochs[(epochs["seed"] == row.seed) & (epochs["metric"] == "val_accuracy")]
        values = curve.sort_values("epoch")["value"].tolist()
        assert row.epoch == 1 + values.index(max(values))  # Keras keeps the first best
        restored_early += row.epoch < len(values)
    assert restored_early, "no run restored an earlier epoch: the test would not see a bug"
    for check in kept_model_checks(url, "small", sweep):
        assert check["evaluated"] == pytest.approx(check["recorded"], abs=1e-6), check


def test_hpo_export_writes_loadable_keras_files(small_study, tmp_path, capsys):
    import keras

    _, url = small_study
    assert main(["export", "small", "--what", "models", "--out", str(tmp_path / "m"),
                 "--storage", url]) == 0
    assert "wrote 3 kept models" in capsys.readouterr().out
    files = sorted(os.listdir(tmp_path / "m"))
    assert [f.rsplit("-seed-", 1)[1] for f in files] == [f"{s}-epoch-2.keras" for s in (0, 1, 2)]
    model = keras.saving.load_model(tmp_path / "m" / files[0])
    assert model.loss == "sparse_categorical_crossentropy"
    assert type(model.optimizer).__name__ == "Adam"
    assert main(["export", "small", "--what", "runs", "--out", str(tmp_path / "x"),
                 "--storage", url]) == 2  # a file format is required for tables
    assert "--format: missing" in capsys.readouterr().err


def test_load_model_names_what_is_kept_when_asked_for_a_run_without_one(small_study):
    from hpo.errors import QueryError

    _, url = small_study
    with Results(url) as r, pytest.raises(QueryError, match=r"seed 0: no kept model .* kept"):
        r.load_model("small", 99, 0)


class Folder(optuna.artifacts.FileSystemArtifactStore):
    """A folder store that records what is removed, in order."""

    def __init__(self, path, removed) -> None:
        super().__init__(path)
        self.removed = removed

    def remove(self, artifact_id: str) -> None:
        self.removed.append(artifact_id)
        super().remove(artifact_id)


def trials_with_models(store, tmp_path, direction: str, n: int, unsaved: int | None = None):
    """A study of ``n`` running trials, each with one run recorded COMPLETE with an uploaded
    file, as a run that keeps its model is (no training: the pruning rules are what is
    tested), except trial ``unsaved``, whose model failed to save; returns (study, trials,
    artifact ids)."""
    (tmp_path / "artifacts").mkdir()
    study = optuna.create_study(storage=store.optuna, direction=direction)
    leases, recorder = Leases(store.engine), Recorder(store.engine)
    trials, ids = [study.ask() for _ in range(n)], []
    for trial in trials:
        trial.set_user_attr(KEEPS_MODELS_ATTR, True)  # as Objective.prepare marks it
        claim = leases.take(trial._trial_id)
        run_id = recorder.start_run(claim, seed=0)
        if trial.number == unsaved:
            recorder.finish_run(claim, run_id, "COMPLETE")
            continue
        path = tmp_path / f"trial-{trial.number}.keras"
        path.write_bytes(b"model")
        ids.append(optuna.artifacts.upload_artifact(
            artifact_store=optuna.artifacts.FileSystemArtifactStore(tmp_path / "artifacts"),
            file_path=str(path), study_or_trial=trial))
        recorder.finish_run(claim, run_id, "COMPLETE", model=(ids[-1], 1))
    return study, trials, ids


def kept_ids(url: str) -> set[str]:
    return {a for found in artifact_entries(url).values() for a in found}


@pytest.mark.parametrize("mode", ["best", "all"])
def test_prune_keeps_the_best_and_unfinished_trials_models_and_removes_the_rest(
        store, tmp_path, mode):
    study, trials, ids = trials_with_models(store, tmp_path, "maximize", 4)
    removed: list[str] = []
    keeper = ModelKeeper(Folder(tmp_path / "artifacts", removed), mode, store.engine)
    study.tell(trials[0], 0.5)
    study.tell(trials[1], 0.7)
    study.tell(trials[2], state=optuna.trial.TrialState.FAIL)  # its completed seeds' models
    # trials[3] is still running: its models stay whatever the others' values.
    assert keeper.prune(study) == (2 if mode == "best" else 0)
    kept = {ids[1], ids[3]} if mode == "best" else set(ids)
    assert set(os.listdir(tmp_path / "artifacts")) == kept
    assert set(removed) == set(ids) - kept
    assert kept_ids(store.url) == kept
    assert keeper.prune(study) == 0  # idempotent: what is gone stays gone, nothing else goes
    study.tell(trials[3], 0.9)  # the new best: the previous best's go only now
    keeper.prune(study)
    assert set(os.listdir(tmp_path / "artifacts")) == ({ids[3]} if mode == "best" else set(ids))


def test_a_crash_between_removing_a_file_and_its_records_is_finished_by_the_next_prune(
        store, tmp_path):
    study, trials, ids = trials_with_models(store, tmp_path, "minimize", 2)
    store_ = optuna.artifacts.FileSystemArtifactStore(tmp_path / "artifacts")
    keeper = ModelKeeper(store_, "best", store.engine)
    study.tell(trials[0], 1.0)
    study.tell(trials[1], 2.0)
    store_.remove(ids[1])  # the file went, then the worker died
    assert keeper.prune(study) == 1
    assert kept_ids(store.url) == {ids[0]}


def test_the_previous_best_keeps_its_models_while_the_new_best_has_none_stored(store, tmp_path):
    study, trials, ids = trials_with_models(store, tmp_path, "maximize", 2, unsaved=1)
    keeper = ModelKeeper(optuna.artifacts.FileSystemArtifactStore(tmp_path / "artifacts"),
                         "best", store.engine)
    study.tell(trials[0], 0.5)
    study.tell(trials[1], 0.9)  # the best, but its model failed to save
    assert keeper.prune(study) == 0
    assert set(os.listdir(tmp_path / "artifacts")) == set(ids) == kept_ids(store.url)


def test_a_best_trial_run_without_keeping_does_not_hold_pruning_up(store, tmp_path):
    # A study continued under "best" after running under "none": its best never had models.
    study, trials, ids = trials_with_models(store, tmp_path, "maximize", 2, unsaved=1)
    study._storage.set_trial_user_attr(trials[1]._trial_id, KEEPS_MODELS_ATTR, False)
    keeper = ModelKeeper(optuna.artifacts.FileSystemArtifactStore(tmp_path / "artifacts"),
                         "best", store.engine)
    study.tell(trials[0], 0.5)
    study.tell(trials[1], 0.9)
    assert keeper.prune(study) == 1 and os.listdir(tmp_path / "artifacts") == []


def test_files_uploaded_but_never_recorded_go_with_their_trial_and_users_files_stay(
        store, tmp_path):
    study, trials, ids = trials_with_models(store, tmp_path, "maximize", 2)
    folder = optuna.artifacts.FileSystemArtifactStore(tmp_path / "artifacts")
    uploaded = {}
    for name in ("trial-0-seed-1.keras", "notes.txt"):  # a killed worker's, a user's
        (tmp_path / name).write_text("x")
        uploaded[name] = optuna.artifacts.upload_artifact(
            artifact_store=folder, file_path=str(tmp_path / name), study_or_trial=trials[0])
    keeper = ModelKeeper(folder, "best", store.engine)
    study.tell(trials[0], 0.5)
    study.tell(trials[1], 0.9)
    assert keeper.prune(study) == 2  # trial 0's recorded model and the unrecorded one
    assert set(os.listdir(tmp_path / "artifacts")) == {ids[1], uploaded["notes.txt"]}
