"""hpo on the JAX backend (the GPU machines' backend): a packed sweep, end to end, on the CPU.

The JAX pack's exactness (replicas equal to solo runs) is in tests/training/packs/test_contract.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo import Results

from conftest import require

require("jax", reason="the JAX backend test needs jax (pip install -e .[jax])")


def test_a_packed_sweep_on_the_jax_backend_and_its_kept_models(tmp_path, sweep_file):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    url = f"sqlite:///{tmp_path / 'jax.db'}"
    tests = str(Path(__file__).resolve().parents[1])
    # `hpo run` packed, then solo keeping every model, in a process that then checks each kept
    # model (conftest.kept_model_checks) and says its backend and whether TensorFlow came in.
    code = ("import json, sys, keras; from hpo.cli import main; from hpo import load_sweep; "
            f"sys.path.insert(0, {tests!r}); from conftest import kept_model_checks; "
            f"run = ['run', {str(sweep_file)!r}, '--storage', {url!r}, "
            "'--set', 'train.epochs=2']; "
            "code = main(run + ['--set', 'protocol.pack=true']) or main(run + ["
            "'--set', 'protocol.pack=false', '--set', 'study.name=\"solo\"', "
            "'--set', 'train.keep_models=\"all\"', '--set', 'protocol.repeats=2', "
            "'--set', 'search.space.width=[4]']); "
            f"sweep = load_sweep({str(sweep_file)!r}); "
            "checks = {s: kept_model_checks(" f"{url!r}" ", s, sweep) for s in ('small', 'solo')}; "
            "print(json.dumps(checks)); "
            "print(keras.backend.backend(), 'tensorflow' in sys.modules); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "jax False"
    with Results(url) as r:
        runs, trials = r.runs("small"), r.trials("small")
    assert len(runs) == 6 and (runs["state"] == "COMPLETE").all()
    assert (trials["n"] == 3).all()
    assert trials["value"].between(0.15, 1.0).all()  # above chance (0.1)
    checks = json.loads(lines[-2])
    best = int(trials.loc[trials["value"].idxmax(), "number"])
    assert sorted((c["trial"], c["seed"]) for c in checks["small"]) == [
        (best, s) for s in (0, 1, 2)]
    assert sorted((c["trial"], c["seed"]) for c in checks["solo"]) == [(0, 0), (0, 1)]
    for check in checks["small"] + checks["solo"]:
        assert check["backend"] == "jax" and check["epoch"] == 2
        assert check["evaluated"] == pytest.approx(check["recorded"], abs=1e-6), check
