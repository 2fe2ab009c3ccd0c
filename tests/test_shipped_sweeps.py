"""The shipped protocols run end to end on small data: CIFAR-10 (a test-written file), FordA."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo import Results, load_sweep, run_sweep
from hpo.sweep import parse_sweep

from conftest import SMALL_SWEEP, write_cifar10

TINY_TRANSFORMER = ["model.head_size=4", "model.num_heads=1", "model.num_blocks=1",
                    "model.mlp_units=[8]", "data.limit_train=150", "data.limit_test=60",
                    "protocol.repeats=2", "train.epochs=2"]


SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"
CIFAR_SWEEPS = sorted(p.name for p in SWEEPS.glob("cifar10-*.toml"))


@pytest.mark.parametrize("name", CIFAR_SWEEPS)
def test_cifar10_protocols_on_a_small_file(tmp_path, monkeypatch, sqlite_url, name):
    write_cifar10(tmp_path, n_train=64, n_test=32)
    monkeypatch.setenv("HPO_DATA_DIR", str(tmp_path))
    sweep = load_sweep(SWEEPS / name, ["protocol.repeats=2", "train.epochs=1",
                                          "search.n_trials=1"])
    study = run_sweep(sweep, storage=sqlite_url)
    assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
    assert study.trials[0].user_attrs["n"] == 2


def test_forda_transformer_protocol_records_test_metrics(sqlite_url):
    sweep = load_sweep(SWEEPS / "forda-transformer.toml", TINY_TRANSFORMER)
    study = run_sweep(sweep, storage=sqlite_url)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    with Results(sqlite_url) as r:
        runs, epochs = r.runs(sweep.study.name), r.epochs(sweep.study.name)
    assert len(runs) == 2
    assert {"test_loss", "test_sparse_categorical_accuracy"} <= set(runs.columns)
    assert trial.value == runs["test_sparse_categorical_accuracy"].mean()
    test_rows = epochs[epochs["metric"].str.startswith("test_")]
    assert set(test_rows["epoch"]) == {2}  # measured once, after the last epoch
    assert trial.intermediate_values == {}  # a test_* objective has no learning curve


def test_early_stopping_ends_a_run_as_keras_would(sqlite_url):
    # min_delta larger than any change: epoch 1 sets the best, epoch 2 exhausts patience 1.
    sweep = parse_sweep(SMALL_SWEEP, [
        "train.epochs=6", "protocol.repeats=2", "search.space.width=[8]",
        "train.early_stopping={monitor='loss', patience=1, min_delta=100.0, "
        "restore_best_weights=true}", "train.evaluate_test=true",
        "study.objective='test_accuracy'"])
    run_sweep(sweep, storage=sqlite_url)
    with Results(sqlite_url) as r:
        runs = r.runs("small")
    assert runs["epochs"].tolist() == [2, 2]
    assert runs["test_accuracy"].notna().all()


def test_every_cifar10_protocol_is_tested():
    assert len(CIFAR_SWEEPS) == 7


def test_tpe_protocol_samples_the_transformer_space(sqlite_url):
    sweep = load_sweep(SWEEPS / "forda-transformer-tpe.toml",
                       [*TINY_TRANSFORMER, "search.n_trials=1", "protocol.repeats=1",
                        "train.epochs=1", "search.space.head_size=[4, 8]",
                        "search.space.num_blocks={low=1, high=2}"])
    study = run_sweep(sweep, storage=sqlite_url)
    assert len(study.trials) == 1
    assert set(study.trials[0].params) == set(sweep.search.space)  # all 7, sampled by TPE
