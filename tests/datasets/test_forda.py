"""FordA as the keras-io example prepares it, from the real files."""

from __future__ import annotations

import numpy as np

from hpo.config import DataSpec
from hpo.datasets.forda import load, read_ucr
from hpo.datasets.prepare import prepare


def test_forda_shapes_and_labels():
    (x_train, y_train), (x_test, y_test) = load()
    assert x_train.shape == (3601, 500, 1) and x_test.shape == (1320, 500, 1)
    assert x_train.dtype == np.float32
    assert np.bincount(y_train).tolist() == [1846, 1755]  # -1 → 0
    assert np.bincount(y_test).tolist() == [681, 639]


def test_read_ucr_maps_minus_one_to_zero(tmp_path):
    path = tmp_path / "tiny.tsv"
    path.write_text("-1\t0.5\t1.5\n1\t2.0\t3.0\n")
    x, y = read_ucr(path)
    assert x.shape == (2, 2, 1) and y.tolist() == [0, 1]


def test_seeded_shuffle_then_last_fifth_validates():
    arrays = load()
    spec = DataSpec("forda", validation=0.2, limit_train=300, shuffle=True)
    a, again, other = (prepare(arrays, spec, seed) for seed in (1, 1, 2))
    assert (len(a.x_train), len(a.x_val)) == (240, 60)
    assert np.array_equal(a.x_val, again.x_val) and not np.array_equal(a.x_val, other.x_val)
    order = np.random.default_rng(1).permutation(300)
    assert np.array_equal(a.x_val, arrays[0][0][:300][order][240:])
