"""The reference protocols, installed as the package ``hpo.sweeps`` (pyproject.toml maps this
folder onto it; ``hpo.shipped`` reads the files). Each file's first line is a one-line summary
(``hpo sweeps`` lists it)."""
