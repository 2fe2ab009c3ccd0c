"""``python -m hpo``: the ``hpo`` command (see :mod:`hpo.cli`)."""

import sys

from hpo.cli import main

sys.exit(main())
