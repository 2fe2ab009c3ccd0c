"""The packed trainer: replicas start as their solo runs, see their data order, fail together
when the model breaks; the shipped builders and a trial's ten seeds pack like their solo runs.

What every pack must keep (histories equal to solo runs, early stopping, NaN isolation, test
values) is tests/training/packs/test_contract.py, which explains the tolerances used here too.
"""

from __future__ import annotations

import numpy as np
import pytest

from hpo.models import builders
from hpo.runner import load_data
from hpo.stats import epoch_order
from hpo.sweep import parse_sweep
from hpo.training.backend import seed_everything
from hpo.training.job import TrainingJob
from hpo.training.packed import epoch_rows, pack_size, train_packed
from hpo.training.packs.base import build_replicas
from hpo.training.solo import train_solo

from conftest import SMALL_SWEEP, CollectSink, write_cifar10


def make_job(*overrides, params=None):
    sweep = parse_sweep(SMALL_SWEEP, list(overrides))
    return TrainingJob(builders.resolve("mlp"), {"width": 16, **(params or {})}, sweep.train,
                       load_data(sweep))


def test_replicas_start_from_the_solo_weights():
    job = make_job()
    replicas = build_replicas([job, job], [3, 7])
    for seed, replica in zip([3, 7], replicas, strict=True):
        seed_everything(seed)
        solo = job.build(job.data.input_shape, job.data.n_classes, **job.model_params)
        for packed_w, solo_w in zip(replica.get_weights(), solo.get_weights(), strict=True):
            assert np.array_equal(packed_w, solo_w)


def test_each_replica_gets_its_seeds_data_order():
    job = make_job()
    splits = [job.data.split(s) for s in (0, 1)]
    rows = epoch_rows([0, 1], splits, epoch=2)
    assert np.array_equal(rows[:, 0], splits[0].train[epoch_order(0, 2, 300)])
    assert np.array_equal(rows[:, 1], splits[1].train[epoch_order(1, 2, 300)])
    assert not np.array_equal(rows[:, 0], rows[:, 1])


@pytest.mark.parametrize("builder, dataset, params", [
    ("cnn", "cifar10", {"batch_norm": True, "dropout": 0.3}),
    ("transformer", "forda", {"head_size": 4, "num_heads": 2, "num_blocks": 1, "ff_dim": 4,
                              "mlp_units": [8], "norm": "pre"}),
])
def test_the_shipped_builders_pack_like_their_solo_runs(tmp_path, monkeypatch, builder, dataset,
                                                        params):
    # Batch normalization's moving statistics and the dropout of attention and dense layers are
    # per-replica state too. Learning rate 0.001: at 0.01 batch normalization over 32 random
    # images amplifies JAX's last-bit rounding differences to 1 % within four steps.
    if dataset == "cifar10":
        write_cifar10(tmp_path, n_train=64, n_test=32)
        monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    sweep = parse_sweep(SMALL_SWEEP, [f"data.dataset='{dataset}'", "data.limit_train=64",
                                      "data.limit_test=32", "train.epochs=2",
                                      "train.learning_rate=0.001"])
    job = TrainingJob(builders.resolve(builder), params, sweep.train, load_data(sweep))
    solo = train_solo(job, [0, 1], CollectSink())
    packed = train_packed(job, [0, 1], CollectSink())
    for seed in (0, 1):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)
        assert packed[seed]["val_loss"] == pytest.approx(solo[seed]["val_loss"], rel=1e-5)


def test_a_broken_builder_fails_every_replica_with_its_reason():
    job = make_job()
    bad = TrainingJob(lambda *a, **k: "not a model", {}, job.spec, job.data)
    sink = CollectSink()
    assert train_packed(bad, [0, 1], sink) == {}
    assert all("not a keras.Model" in e for e in sink.errors.values()) and len(sink.errors) == 2


def test_pack_size():
    assert pack_size(True, 10, 1_000) == 10
    assert pack_size(True, 10, 50_000_000) == 2  # 800 MB per replica: two fit in 2 GiB
    assert pack_size(3, 10, 1_000) == 3 and pack_size(False, 10, 1_000) == 1
