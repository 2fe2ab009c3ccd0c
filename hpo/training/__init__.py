"""Trainers: a trial's seeded runs, one at a time or packed in one model, reported to a sink.

- :mod:`~hpo.training.job`: :class:`~hpo.training.job.TrainingJob` (what to train),
  :class:`~hpo.training.job.RunSink` (whom to tell), the run errors and shared constants.
- :mod:`~hpo.training.dispatch`: :func:`~hpo.training.dispatch.train_runs`, the entry point:
  packed (the default) or solo, in packs that fit in memory.
- :mod:`~hpo.training.solo`: one seeded run at a time, one Keras ``fit`` per epoch.
- :mod:`~hpo.training.packed`: a trial's seeds as replicas trained together, and its epoch loop.
- :mod:`~hpo.training.packs`: how replicas train together (``Pack``): a functional Keras model
  on any backend, or a backend's XLA fast path (``packs.tf``, ``packs.jax``).
- :mod:`~hpo.training.epochs`: the epoch rules both trainers apply to every run (NaN, early
  stopping, the last epoch, the test split, recording and reporting).
- :mod:`~hpo.training.compile`: compiling a model with a spec's optimizer, loss and metrics.
- :mod:`~hpo.training.backend`: seeding and determinism per Keras backend.

Nothing here imports the sweep file format, the runner or the store: the runner hands a job and
a sink in, histories come back.
"""
