"""The study database: Optuna's tables plus hpo's run and epoch-metric tables, in one SQL database.

Example:
    >>> import tempfile, os
    >>> url = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "x.db")
    >>> store = Store.open(url, create=True)
    >>> sorted(t for t in store.table_names() if t.startswith("hpo_"))
    ['hpo_epochs', 'hpo_leases', 'hpo_models', 'hpo_runs']
"""

from hpo.store.engine import Store, sqlite_file

__all__ = ["Store", "sqlite_file"]
