"""The validated sweep: one frozen dataclass per sweep-file section, and the names they may use.

This is the leaf every layer shares: the trainers read a :class:`TrainSpec`, the data layer a
:class:`DataSpec`, the runner a :class:`Sweep`. It imports nothing heavy (no Keras, no Optuna:
:mod:`hpo.space` imports Optuna on first use), so validating a sweep stays fast.
:mod:`hpo.sweep` reads and checks the TOML that becomes these objects.

Example:
    >>> spec = TrainSpec(optimizer="sgd", learning_rate=0.1)
    >>> spec.epochs, uses_sparse_targets(spec.loss), "adam" in OPTIMIZERS
    (10, True, True)
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpo.errors import SweepError
from hpo.space import SearchSpace

# Keras' names for what a sweep may name; kept here rather than read from Keras, so that
# validating a sweep file imports neither Keras nor TensorFlow.
OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
    "adadelta": "Adadelta",
    "adamax": "Adamax",
    "nadam": "Nadam",
    "ftrl": "Ftrl",
    "lion": "Lion",
}
# Losses that take integer class labels; every other loss gets one-hot targets (e.g. the
# assignment's MSE on one-hot vectors).
SPARSE_LOSSES = frozenset({"sparse_categorical_crossentropy"})
LOSSES = SPARSE_LOSSES | {
    "categorical_crossentropy",
    "binary_crossentropy",
    "mse",
    "mean_squared_error",
    "mae",
    "mean_absolute_error",
    "hinge",
    "squared_hinge",
    "categorical_hinge",
    "huber",
    "kl_divergence",
    "poisson",
}
# Metrics that need integer labels, metrics that need one-hot targets, and those that take either.
SPARSE_METRICS = frozenset({"sparse_categorical_accuracy", "sparse_top_k_categorical_accuracy"})
ONE_HOT_METRICS = frozenset({"categorical_accuracy", "top_k_categorical_accuracy", "auc",
                             "precision", "recall", "mse", "mae"})
METRICS = SPARSE_METRICS | ONE_HOT_METRICS | {"accuracy"}


def uses_sparse_targets(loss: str) -> bool:
    """True when ``loss`` takes integer labels rather than one-hot vectors."""
    return loss in SPARSE_LOSSES


KEEP_MODELS = ("best", "all", "none")
SAMPLERS = ("grid", "random", "tpe", "nsgaii", "cmaes", "gp", "qmc")
PRUNERS = ("none", "median", "hyperband", "successive_halving")
# Samplers whose Optuna implementation needs a package beyond Optuna's own dependencies.
SAMPLER_PACKAGES = {"cmaes": "cmaes", "gp": "torch"}
# A study name that becomes the default database file studies/<name>.db: a plain file name.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


# What an objective may name besides a history key: measures of a run, not of an epoch.
# params: the model's trainable parameters; epoch_seconds: the run's wall time per epoch.
RUN_MEASURES = ("params", "epoch_seconds")


@dataclass(frozen=True)
class ObjectiveSpec:
    """One objective: a history key (or a :data:`RUN_MEASURES` name), its direction, and how
    a seed's curve becomes one number (``reduce``: its last epoch or its best)."""

    metric: str
    direction: str
    reduce: str = "last"


@dataclass(frozen=True)
class StudySpec:
    """``[study]``: which Optuna study, where, and what it optimizes.

    ``objectives`` holds every objective, the first being ``objective``/``direction``/
    ``reduce`` (one, unless ``[study] objectives`` names several: a multi-objective study).
    """

    name: str
    direction: str
    objective: str = "val_accuracy"
    reduce: str = "last"
    storage: str | None = None
    # Where kept models go: a folder, or "module:function" returning an Optuna ArtifactStore;
    # None: the folder <study.name>/artifacts beside a SQLite database (hpo.kept_models).
    artifacts: str | None = None
    objectives: tuple[ObjectiveSpec, ...] = ()

    def __post_init__(self) -> None:
        if not self.objectives:
            object.__setattr__(self, "objectives",
                               (ObjectiveSpec(self.objective, self.direction, self.reduce),))

    @property
    def directions(self) -> list[str]:
        """Each objective's direction, in order."""
        return [o.direction for o in self.objectives]


@dataclass(frozen=True)
class DataSpec:
    """``[data]``: the dataset and how much of it, and what validates."""

    dataset: str
    validation: str | float = "test"
    limit_train: int = 0
    limit_test: int = 0
    shuffle: bool = False


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: the builder and the fixed keyword arguments passed to it."""

    builder: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: compile and fit settings; each can also be a ``[search.space]`` name."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 0.001
    loss: str = "sparse_categorical_crossentropy"
    metrics: tuple[str, ...] = ("accuracy",)
    early_stopping: dict[str, Any] | None = None
    evaluate_test: bool = False
    # Which trials' trained models are kept as Optuna artifacts (hpo.kept_models).
    keep_models: str = "best"


# The [train] keys: a sampled parameter of one of these names is a training setting, any other
# name a builder keyword.
TRAIN_KEYS = frozenset(f.name for f in dataclasses.fields(TrainSpec))


@dataclass(frozen=True)
class ProtocolSpec:
    """``[protocol]``: ``repeats`` seeded runs per configuration: seeds ``seed, seed+1, ...``."""

    repeats: int = 10
    seed: int = 0
    pack: bool | int = True
    # Trials one worker trains together (independent samplers only): true, false or at most N.
    pack_trials: bool | int = True
    # Completed seeds a trial needs for a value; fewer (failed seeds) fail the trial.
    min_repeats: int | None = None

    def __post_init__(self) -> None:
        if self.min_repeats is None:
            object.__setattr__(self, "min_repeats", self.repeats)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds every configuration is trained with: ``seed, seed+1, ..., seed+repeats-1``."""
        return tuple(range(self.seed, self.seed + self.repeats))


@dataclass(frozen=True)
class SearchSpec:
    """``[search]``: the sampler, how many trials, the space, and the configurations to try
    first (``enqueue``: each a checked param → value table)."""

    sampler: str = "grid"
    n_trials: int | None = None
    seed: int | None = None
    pruner: str = "none"
    space: SearchSpace = field(default_factory=lambda: SearchSpace({}))
    enqueue: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    study: StudySpec
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    protocol: ProtocolSpec
    search: SearchSpec
    path: str | None = None

    @property
    def storage_url(self) -> str:
        """``study.storage``, else ``sqlite:///studies/<study.name>.db``.

        The default makes the name a file name, so then it must be one (else SweepError): a
        name such as ``../../x`` or ``%2e%2e%2fx`` (SQLAlchemy decodes ``%``) would put the
        database outside ``studies/``. With ``study.storage`` or ``--storage`` any name is
        fine: it is only a value in Optuna's tables.
        """
        if self.study.storage:
            return self.study.storage
        if not _FILE_NAME.fullmatch(self.study.name):
            raise SweepError(
                f"study.name = {self.study.name!r}: expected letters, digits, '.', '_' or '-' "
                "(at most 100, not starting with '.' or '-'), as it names the database file "
                "studies/<name>.db; or set study.storage"
            )
        return f"sqlite:///studies/{self.study.name}.db"

    @property
    def n_trials(self) -> int:
        """The study's trial budget: ``search.n_trials``, or the grid's size for a grid."""
        if self.search.n_trials is not None:
            return self.search.n_trials
        if self.search.sampler == "grid":
            return self.search.space.grid_size()
        raise AssertionError("validated sweeps have n_trials for non-grid samplers")

    @property
    def history_keys(self) -> tuple[str, ...]:
        """The Keras history keys every run records (what ``objective`` may name)."""
        names = ("loss", *self.train.metrics)
        tested = tuple(f"test_{n}" for n in names) if self.train.evaluate_test else ()
        return names + tuple(f"val_{n}" for n in names) + tested

    def split_params(self, params: Mapping[str, Any]) -> tuple[dict[str, Any], TrainSpec]:
        """Split sampled ``params`` into builder keyword arguments and the trial's TrainSpec."""
        train = dataclasses.replace(
            self.train, **{k: v for k, v in params.items() if k in TRAIN_KEYS}
        )
        model = {**self.model.params, **{k: v for k, v in params.items() if k not in TRAIN_KEYS}}
        return model, train

    def identity(self) -> dict[str, Any]:
        """What makes two runs of this sweep the same experiment (stored on the study).

        Everything that changes a trial's numbers or which configurations are tried: the
        objective, data, model, training, seeds, ``min_repeats`` (whether a trial with failed
        seeds has a value), the sampler and its seed, the pruner and the space; with a pruner
        also ``protocol.pack``, which decides which seeds' mean the pruner judges, and
        ``protocol.pack_trials`` when it packs several trials (which trials are finished when
        the pruner judges one; true means one trial at a time with a pruner, as before it
        existed). Without a pruner both change the speed, not the numbers, and are left out, as
        are ``search.n_trials`` (a study may be run on for more trials), ``train.keep_models``
        and ``study.artifacts`` (which models are kept, and where).
        """
        sampler_seed = self.search.seed if self.search.seed is not None else self.protocol.seed
        protocol = {"repeats": self.protocol.repeats, "seed": self.protocol.seed,
                    "min_repeats": self.protocol.min_repeats}
        if self.search.pruner != "none":
            protocol["pack"] = self.protocol.pack
            if self.protocol.pack_trials not in (True, False, 1):  # true is one with a pruner
                protocol["pack_trials"] = self.protocol.pack_trials
        several = {"study.objectives": [dataclasses.asdict(o) for o in self.study.objectives]
                   } if len(self.study.objectives) > 1 else {}
        return {
            "study.objective": self.study.objective,
            "study.reduce": self.study.reduce,
            **several,
            "data": dataclasses.asdict(self.data),
            "model": {"builder": self.model.builder, **self.model.params},
            "train": {**{k: v for k, v in dataclasses.asdict(self.train).items()
                         if k != "keep_models"},
                      "metrics": list(self.train.metrics)},
            "protocol": protocol,
            "search": {"sampler": self.search.sampler, "seed": sampler_seed,
                       "pruner": self.search.pruner},
            "search.space": self.search.space.to_toml(),
        }
