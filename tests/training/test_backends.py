"""hpo on the JAX backend (the GPU machines' backend): a packed sweep, end to end, on the CPU."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hpo import Results

pytest.importorskip("jax", reason="the JAX backend test needs jax (pip install -e .[jax])")


def test_a_packed_sweep_on_the_jax_backend(tmp_path, sweep_file):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    url = f"sqlite:///{tmp_path / 'jax.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "hpo", "run", str(sweep_file), "--storage", url,
         "--set", "train.epochs=2", "--set", "protocol.pack=true"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import keras, hpo.training.packed; print(keras.backend.backend())"],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert probe.stdout.strip() == "jax"
    with Results(url) as r:
        runs, trials = r.runs("small"), r.trials("small")
    assert len(runs) == 6 and (runs["state"] == "COMPLETE").all()
    assert (trials["n"] == 3).all()
    assert trials["value"].between(0.15, 1.0).all()  # above chance (0.1)
