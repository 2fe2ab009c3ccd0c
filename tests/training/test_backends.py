"""hpo on the JAX backend (the GPU machines' backend): a packed sweep, end to end, on the CPU.

The JAX pack's exactness (replicas equal to solo runs) is in tests/training/packs/test_contract.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

from hpo import Results

from conftest import require

require("jax", reason="the JAX backend test needs jax (pip install -e .[jax])")


def test_a_packed_sweep_on_the_jax_backend(tmp_path, sweep_file):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    url = f"sqlite:///{tmp_path / 'jax.db'}"
    # `hpo run` in a process that then says its backend and whether TensorFlow was imported.
    code = ("import sys, keras; from hpo.cli import main; "
            f"code = main(['run', {str(sweep_file)!r}, '--storage', {url!r}, "
            "'--set', 'train.epochs=2', '--set', 'protocol.pack=true']); "
            "print(keras.backend.backend(), 'tensorflow' in sys.modules); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "jax False"
    with Results(url) as r:
        runs, trials = r.runs("small"), r.trials("small")
    assert len(runs) == 6 and (runs["state"] == "COMPLETE").all()
    assert (trials["n"] == 3).all()
    assert trials["value"].between(0.15, 1.0).all()  # above chance (0.1)
