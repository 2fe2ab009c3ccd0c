"""hpo on the JAX backend (the GPU machines' backend): a packed sweep, end to end, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


# test_packed.py's tests of what the JAX fast path does (with dropout only: it covers the plain
# case); the others test the functional pack (also used on JAX for convolutions and mixed
# architectures) or no backend at all, and TensorFlow already runs them (CI time: the whole module
# on JAX took 3 min, these 1).
JAX_FAST_PATH_TESTS = ("first_step or (histories_agree and dropout) or early_stopping "
                       "or backend_chooses or broken_builder or data_order")


def test_packed_replicas_equal_solo_runs_on_the_jax_backend():
    """The exactness tests of test_packed.py, run again on JAX (its own packed trainer)."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
         "tests/training/test_packed.py", "-k", JAX_FAST_PATH_TESTS],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "7 passed" in result.stdout and " failed" not in result.stdout
