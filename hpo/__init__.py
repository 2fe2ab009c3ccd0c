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

from hpo.config import Sweep
from hpo.datasets import register_dataset
from hpo.errors import HpoError, RunError, SweepError
from hpo.models import register_model
from hpo.results import Results
from hpo.runner import run_sweep
from hpo.sweep import load_sweep, parse_sweep

__all__ = [
    "HpoError",
    "Results",
    "RunError",
    "Sweep",
    "SweepError",
    "load_sweep",
    "parse_sweep",
    "register_dataset",
    "register_model",
    "run_sweep",
]
