"""Trainers: one seeded run at a time (``solo``) or a trial's seeds packed in one model.

:func:`hpo.training.dispatch.train` picks one; both report through the same ``RunSink``.
"""
