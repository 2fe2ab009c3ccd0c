"""Kept models: each completed run's trained Keras model, stored as an Optuna artifact.

With ``[train] keep_models = "best"`` (the default) or ``"all"``, a run that completes saves its
model as a ``.keras`` file: the weights it ended with, or those early stopping restored, in a copy
of its model compiled with the trial's optimizer, loss and metrics (fresh optimizer state), so
that plain ``keras.saving.load_model`` gives a model ready to ``evaluate``. A packed replica is
saved as its own model, like a solo run. The file is uploaded with
:func:`optuna.artifacts.upload_artifact` to the trial (optuna-dashboard lists it on the trial's
page), and hpo's ``hpo_models`` table records (artifact id, epoch) in the transaction that marks
the run COMPLETE, so a run is never COMPLETE with a model half recorded.

Under ``"best"``, after each trial is told, the models of every *finished* trial that is not the
best (with several objectives: not on the Pareto front) are removed from the store and from the
records, once every COMPLETE run of the best has its model recorded (a model that failed to
save keeps the previous best's until a later tell; a best trial that ran without keeping models
does not hold pruning up). Unfinished trials keep theirs: a trial's
models are stored and recorded before it can become the best, and the previous best's are
removed only after that. Workers may prune at the same time: removing is idempotent.

Where the store is (``[study] artifacts``): a folder (Optuna's ``FileSystemArtifactStore``), or
``"module:function"`` returning any Optuna artifact store (S3, GCS, ...). By default the folder
``<study.name>/artifacts`` beside a SQLite database file (``studies/<name>/artifacts`` for the
default database), else ``studies/<name>/artifacts`` in the working directory. An explicit
setting is remembered on the study (:data:`ARTIFACTS_ATTR`) for :class:`hpo.Results` and
``hpo dashboard``.

Example:
    >>> location("sqlite:///studies/mnist-q6.db", "mnist-q6")
    'studies/mnist-q6/artifacts'
    >>> location("postgresql://db/hpo", "q6", "/shared/models")
    '/shared/models'
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from typing import Any, NamedTuple

import optuna
import sqlalchemy as sa

from hpo._imports import LazyImport
from hpo.config import Sweep, TrainSpec
from hpo.errors import SweepError
from hpo.registry import import_callable, is_function_path
from hpo.store import sqlite_file
from hpo.store.schema import KeptModel, Run
from hpo.study import FINISHED

keras = LazyImport("keras")

# Study user attribute: the artifact store a sweep named (``[study] artifacts``), resolved.
ARTIFACTS_ATTR = "hpo.artifacts"
# Trial user attribute: the trial ran keeping its models (a study continued under another
# keep_models, or begun before kept models existed, has best trials without any).
KEEPS_MODELS_ATTR = "hpo.keeps_models"
_MODEL_FILE = re.compile(r"trial-\d+-seed-\d+\.keras")  # the file name upload() gives
_PREFIX = "artifacts:"  # Optuna's key of an artifact's entry in the trial's system attributes


def location(storage_url: str, study_name: str, setting: str | None = None) -> str:
    """Where a study's models are kept: ``setting`` (a folder or ``module:function``), else
    the folder ``<study_name>/artifacts`` beside a SQLite file, else under ``studies/``."""
    if setting:
        return setting
    database = sqlite_file(storage_url)
    if database is not None:
        return os.path.join(os.path.dirname(database), study_name, "artifacts")
    return os.path.join("studies", study_name, "artifacts")


def open_store(where: str, key: str = "study.artifacts", create: bool = False) -> Any:
    """The Optuna artifact store at ``where``: a folder (made now with ``create``, else by the
    first upload), or what ``module:function`` returns. Raises :class:`~hpo.errors.SweepError`
    naming ``key`` when it cannot be one."""
    if is_function_path(where):
        try:
            made = import_callable(key, where)()
        except SweepError:
            raise
        except Exception as exc:  # the user's function may raise anything
            reason = " ".join(f"{type(exc).__name__}: {exc}".split())
            raise SweepError(f"{key} = {where!r}: it raised {reason}") from exc
        if not all(callable(getattr(made, m, None)) for m in ("open_reader", "write", "remove")):
            raise SweepError(f"{key} = {where!r}: the function returned {type(made).__name__}, "
                             "not an Optuna artifact store (open_reader, write, remove)")
        return made
    blocked = next((p for p in _parents(where) if os.path.exists(p) and not os.path.isdir(p)),
                   None)
    if blocked is not None:
        raise SweepError(f"{key} = {where!r}: cannot be a folder, {blocked!r} is a file")
    if create:
        os.makedirs(where, exist_ok=True)
    return optuna.artifacts.FileSystemArtifactStore(where)


def _parents(path: str) -> list[str]:
    """``path`` and each folder above it."""
    path = os.path.abspath(path)
    found = [path]
    while os.path.dirname(path) != path:
        path = os.path.dirname(path)
        found.append(path)
    return found


def study_location(study: optuna.Study, storage_url: str) -> str:
    """Where ``study``'s models are: the location its sweep named, else the default."""
    return location(storage_url, study.study_name, study.user_attrs.get(ARTIFACTS_ATTR))


def file_path(store: Any, artifact_id: str) -> str | None:
    """The file holding ``artifact_id`` in a folder store, else None."""
    base = getattr(store, "_base_path", None)
    return os.path.join(str(base), artifact_id) if base is not None else None


def _resolved(setting: str | None) -> str | None:
    """An explicit folder made absolute (workers and readers may start elsewhere)."""
    if setting and not is_function_path(setting):
        return os.path.abspath(setting)
    return setting


class Snapshot(NamedTuple):
    """A run's model at its end: the model (for its architecture), a copy of its weights (a
    packed replica's variables may change after its run ended) and their epoch."""

    model: Any
    weights: list
    epoch: int


def snapshot(model: Any, epoch: int) -> Snapshot:
    """Copy ``model``'s weights now."""
    return Snapshot(model, [w.copy() for w in model.get_weights()], epoch)


def save_model(kept: Snapshot, spec: TrainSpec, path: str, copy: Any = None) -> Any:
    """Save ``kept`` to ``path`` (``.keras``): a copy of the model with its weights, compiled
    with ``spec`` (the optimizer built, with zero slots, so that loading warns of nothing).
    Returns the copy: pass it back for another run of the same trial (same architecture) to
    skip cloning and compiling again."""
    from hpo.training.compile import compile_model

    if copy is None:
        copy = keras.models.clone_model(kept.model)
        compile_model(copy, spec)
        copy.optimizer.build(copy.trainable_variables)
    copy.set_weights(kept.weights)
    copy.save(path)
    return copy


class ModelKeeper:
    """One study's kept models: uploading a run's model, and pruning what is no longer kept.

    ``mode`` is ``[train] keep_models``; ``store`` an Optuna artifact store; ``engine`` the
    study database's (hpo's tables).
    """

    def __init__(self, store: Any, mode: str, engine: sa.Engine | None) -> None:
        self.store, self.mode, self.engine = store, mode, engine

    @classmethod
    def for_sweep(cls, sweep: Sweep, storage_url: str) -> ModelKeeper | None:
        """The sweep's keeper (None under ``keep_models = "none"``), its store opened before
        the database is: a store that cannot be made writes nothing. :meth:`attach` it to the
        study's database next."""
        if sweep.train.keep_models == "none":
            return None
        where = location(storage_url, sweep.study.name, _resolved(sweep.study.artifacts))
        return cls(open_store(where), sweep.train.keep_models, None)

    def attach(self, study: optuna.Study, engine: sa.Engine, setting: str | None) -> None:
        """Use ``engine`` (the study's database), and remember the store on the study for
        readers (:func:`study_location`) and later workers: an explicit ``[study] artifacts``
        ``setting``, or the default folder made absolute when the database is not a SQLite file
        (the default then depends on the working directory; beside a SQLite file it moves with
        the file). Without a setting, a location the study already holds is used."""
        self.engine = engine
        stored = study.user_attrs.get(ARTIFACTS_ATTR)
        if not setting and stored:  # the location the study's first worker recorded
            self.store = open_store(stored)
            return
        url = engine.url.render_as_string(hide_password=False)
        if not setting and sqlite_file(url) is None:
            setting = location(url, study.study_name)
        setting = _resolved(setting)
        if setting and stored != setting:
            study.set_user_attr(ARTIFACTS_ATTR, setting)

    def upload(self, trial: optuna.Trial, seed: int, kept: Snapshot, spec: TrainSpec,
               copy: Any = None) -> tuple[str, Any]:
        """Save ``kept`` and upload it to ``trial``: (the artifact id, the compiled copy to
        pass back for the trial's next run, see :func:`save_model`)."""
        base = file_path(self.store, "")
        if base is not None:
            os.makedirs(base, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="hpo-model-") as folder:
            path = os.path.join(folder, f"trial-{trial.number}-seed-{seed}.keras")
            try:
                copy = save_model(kept, spec, path, copy)
            except Exception:
                if copy is None:
                    raise
                copy = save_model(kept, spec, path)  # the kept copy went stale: a fresh one
            artifact = optuna.artifacts.upload_artifact(
                artifact_store=self.store, file_path=path, study_or_trial=trial)
        return artifact, copy

    def prune(self, study: optuna.Study) -> int:
        """Under ``"best"``: remove the models of finished trials that are not the best (the
        Pareto front); return how many were removed."""
        if self.mode != "best":
            return 0
        # States first, the best second: a trial that finishes in between is unfinished in the
        # first read (kept) and, if it became the best, makes the previous best removable.
        finished = {t._trial_id for t in study.get_trials(deepcopy=False, states=FINISHED)}
        try:
            front = study.best_trials
        except ValueError:  # no COMPLETE trial yet
            front = []
        best = {t._trial_id for t in front}
        keeping = {t._trial_id for t in front if t.user_attrs.get(KEEPS_MODELS_ATTR)}
        if not self._stored(keeping):
            return 0  # a best trial's models failed to store: keep the previous ones for now
        return self.remove(sorted(finished - best))

    def _stored(self, trial_ids: set[int]) -> bool:
        """True when each COMPLETE run of ``trial_ids`` has its kept model recorded."""
        if not trial_ids:
            return True
        with self.engine.connect() as conn:
            missing = conn.execute(
                sa.select(sa.func.count()).select_from(Run)
                .outerjoin(KeptModel, KeptModel.run_id == Run.run_id)
                .where(Run.trial_id.in_(list(trial_ids)), Run.state == "COMPLETE",
                       KeptModel.run_id.is_(None))
            ).scalar()
        return missing == 0

    def remove(self, trial_ids: Sequence[int]) -> int:
        """Remove the kept models of ``trial_ids``: each file, then its records (hpo's row and
        the artifact's entry in Optuna's trial system attributes), so that a crash in between
        leaves a record whose removal is retried. Files a killed worker uploaded without
        recording them (its run never ended) are found by their Optuna entry and go too."""
        if not trial_ids:
            return 0
        with self.engine.connect() as conn:
            recorded = conn.execute(
                sa.select(KeptModel.artifact_id, Run.trial_id)
                .join(Run, Run.run_id == KeptModel.run_id)
                .where(Run.trial_id.in_(list(trial_ids)))
            ).all()
            listed = conn.execute(
                sa.text("SELECT key, trial_id, value_json FROM trial_system_attributes "
                        "WHERE key LIKE 'artifacts:%' AND trial_id IN :ids")
                .bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": list(trial_ids)}).all()
        # Only hpo's own uploads: a file a user attached (through the dashboard) stays.
        ours = [(key.removeprefix(_PREFIX), t) for key, t, value in listed
                if _MODEL_FILE.fullmatch((json.loads(json.loads(value)) or {}).get("filename", ""))]
        rows = sorted({*recorded, *ours})
        for artifact_id, trial_id in rows:
            with contextlib.suppress(optuna.artifacts.exceptions.ArtifactNotFound):
                self.store.remove(artifact_id)
            with self.engine.begin() as conn:
                conn.execute(sa.delete(KeptModel).where(KeptModel.artifact_id == artifact_id))
                # Optuna has no call to drop a finished trial's attribute (its storage refuses
                # writes to finished trials), so hpo deletes the entry upload_artifact wrote.
                conn.execute(sa.text("DELETE FROM trial_system_attributes "
                                     "WHERE trial_id = :trial AND key = :key"),
                             {"trial": trial_id, "key": _PREFIX + artifact_id})
        return len(rows)


