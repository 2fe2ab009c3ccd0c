"""hpo: seeded, repeated hyperparameter sweeps for Keras on Optuna.

A sweep file names a dataset, a model builder, training settings, the repeat protocol and a
search space; :func:`run_sweep` trains every configuration once per seed, records every metric of
every epoch of every seed in the study's database, and sets each trial's value to the mean over
seeds. :class:`Results` reads it all back as pandas DataFrames.

Example:
    >>> import hpo
    >>> sweep = hpo.load_sweep("sweeps/mnist-q6-width.toml")  # doctest: +SKIP
    >>> study = hpo.run_sweep(sweep)  # doctest: +SKIP
    >>> hpo.Results(sweep.storage_url).trials(study.study_name)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hpo.errors import (
    HpoError,
    MetricNotFound,
    QueryError,
    RunError,
    StorageError,
    StudyNotFound,
    SweepError,
)

if TYPE_CHECKING:
    from hpo.config import Sweep
    from hpo.datasets import register_dataset
    from hpo.models import register_model
    from hpo.results import Results
    from hpo.runner import run_sweep
    from hpo.study import enqueue_trial
    from hpo.sweep import load_sweep, parse_sweep

# The rest of the API, imported on first use (PEP 562): importing one module of hpo (the config
# leaf, a trainer) imports that module's own dependencies, not Optuna, pandas and the runner.
_LAZY = {
    "Results": "hpo.results",
    "Sweep": "hpo.config",
    "enqueue_trial": "hpo.study",
    "load_sweep": "hpo.sweep",
    "parse_sweep": "hpo.sweep",
    "register_dataset": "hpo.datasets",
    "register_model": "hpo.models",
    "run_sweep": "hpo.runner",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'hpo' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "HpoError",
    "MetricNotFound",
    "QueryError",
    "Results",
    "RunError",
    "StorageError",
    "StudyNotFound",
    "Sweep",
    "SweepError",
    "enqueue_trial",
    "load_sweep",
    "parse_sweep",
    "register_dataset",
    "register_model",
    "run_sweep",
]
