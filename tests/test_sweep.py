"""Sweep files: parsing, defaults, overrides, and one-line errors for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.errors import SweepError
from hpo.sweep import apply_override, load_sweep, parse_sweep

from conftest import SMALL_SWEEP


def test_small_sweep_parses_with_defaults():
    sweep = parse_sweep(SMALL_SWEEP)
    assert sweep.study.reduce == "last" and sweep.study.storage is None
    assert sweep.storage_url == "sqlite:///studies/small.db"
    assert sweep.train.optimizer == "adam" and sweep.train.metrics == ("accuracy",)
    assert sweep.protocol.seeds == (0, 1, 2)
    assert sweep.n_trials == 2  # the grid's size
    assert sweep.history_keys == ("loss", "accuracy", "val_loss", "val_accuracy")


def test_shipped_sweeps_are_valid():
    files = sorted(Path(__file__).resolve().parents[1].glob("sweeps/*.toml"))
    assert files
    for path in files:
        load_sweep(path)


def test_overrides_are_read_as_toml_and_validated():
    sweep = parse_sweep(SMALL_SWEEP, ["train.epochs=7", "train.optimizer=sgd",
                                      "search.space.width=[1, 2, 3]", "study.name='x y'"])
    assert sweep.train.epochs == 7 and sweep.train.optimizer == "sgd"
    assert sweep.search.space.grid() == {"width": [1, 2, 3]}
    assert sweep.study.name == "x y"
    with pytest.raises(SweepError, match=r"train.epochs = 0: expected an integer >= 1"):
        parse_sweep(SMALL_SWEEP, ["train.epochs=0"])


@pytest.mark.parametrize("override", ["epochs=3", "train.=3", "train.epochs"])
def test_malformed_override(override):
    with pytest.raises(SweepError, match="expected section.key=value"):
        apply_override({}, override)


def test_override_through_a_value_is_refused():
    with pytest.raises(SweepError, match="train.epochs is a value, not a section"):
        parse_sweep(SMALL_SWEEP, ["train.epochs.x=3"])


def test_split_params_routes_train_keys_to_train():
    sweep = parse_sweep(SMALL_SWEEP)
    model, train = sweep.split_params({"width": 8, "learning_rate": 0.5})
    assert model == {"width": 8} and train.learning_rate == 0.5


def test_a_search_free_sweep_is_one_configuration():
    text = SMALL_SWEEP.split("[search.space]")[0]
    sweep = parse_sweep(text)
    assert len(sweep.search.space) == 0 and sweep.n_trials == 1


# (replacement applied to SMALL_SWEEP or extra overrides, expected fragment of the one-line error)
BAD = [
    ("not = [valid", "not valid TOML"),
    (["trian.epochs=3"], "[trian]: unknown section"),
    (["train.epoch=3"], "train.epoch: unknown key"),
    (["train.epochs=0"], "train.epochs = 0: expected an integer >= 1"),
    (["train.epochs='ten'"], "train.epochs = 'ten': expected an integer >= 1"),
    (["train.batch_size=-32"], "train.batch_size = -32"),
    (["protocol.repeats=0"], "protocol.repeats = 0"),
    (["train.learning_rate=0"], "train.learning_rate = 0: expected a number > 0"),
    (["train.optimizer='adamm'"], "train.optimizer = 'adamm': expected one of adam"),
    (["train.loss='msee'"], "train.loss = 'msee'"),
    (["train.metrics=['acc']"], "unknown metric 'acc'"),
    (["data.dataset='mnistt'"], "data.dataset = 'mnistt': unknown; expected one of cifar10"),
    (["model.builder='mlpp'"], "model.builder = 'mlpp': unknown"),
    (["model.builder='no_such_module:build'"], "cannot import module 'no_such_module'"),
    (["study.direction='up'"], "study.direction = 'up': expected one of maximize, minimize"),
    (["study.objective='val_acc'"], "study.objective = 'val_acc': expected a history key"),
    (["study.reduce='mean'"], "study.reduce = 'mean'"),
    (["data.validation=1.5"], "data.validation = 1.5"),
    (["data.limit_train=-1"], "data.limit_train = -1"),
    (["search.space.width=[]"], "search.space.width = []"),
    (["search.space.width={low=8, high=2}"], "low = 8 > high = 2"),
    (["search.space.width={low=2, high=8}"], "the grid sampler needs a list"),
    (["search.sampler='tpe'"], "search.n_trials: missing"),
    (["search.sampler='bayes'"], "search.sampler = 'bayes'"),
    (["search.space.optimizer=['adam', 'sgdd']"], "search.space.optimizer = 'sgdd'"),
    (["search.space.learning_rate=[0.1, -1.0]"], "search.space.learning_rate = -1.0"),
    (["train.loss='mse'", "train.metrics=['sparse_categorical_accuracy']"], "does not fit loss"),
    (["study.storage='not a url'"], "study.storage = 'not a url'"),
]


def _apply(case):
    text, overrides = (case, []) if isinstance(case, str) else (SMALL_SWEEP, case)
    return text, overrides


@pytest.mark.parametrize(("case", "fragment"), BAD)
def test_bad_sweeps_give_one_line_naming_key_value_and_allowed(case, fragment):
    text, overrides = _apply(case)
    with pytest.raises(SweepError) as info:
        parse_sweep(text, overrides)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_missing_required_keys():
    with pytest.raises(SweepError, match="study.direction: missing"):
        parse_sweep(SMALL_SWEEP.replace('direction = "maximize"', ""))
    with pytest.raises(SweepError, match="model.builder: missing"):
        parse_sweep(SMALL_SWEEP.replace('builder = "mlp"', ""))


def test_empty_space_table_is_refused():
    with pytest.raises(SweepError, match="search.space = {}: empty"):
        parse_sweep(SMALL_SWEEP.split("width =")[0])


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [(["train.epochs=0"], "train.epochs = 0"), (["data.dataset='nope'"], "data.dataset = 'nope'")],
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, sweep_file, overrides,
                                                                 fragment):
    args = [sys.executable, "-m", "hpo", "run", str(sweep_file)]
    for override in overrides:
        args += ["--set", override]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error:") and fragment in lines[0]
    assert not (tmp_path / "studies").exists()


def test_a_dataset_that_cannot_be_loaded_is_one_line_and_writes_nothing(tmp_path, sweep_file):
    env = {**os.environ, "HPO_DATA_DIR": str(tmp_path / "empty")}  # no mnist.npz, no network
    result = subprocess.run([sys.executable, "-m", "hpo", "run", str(sweep_file)], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "data.dataset = 'mnist': cannot load" in lines[0]
    assert not (tmp_path / "studies").exists()


def test_sweep_values_are_data_never_evaluated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "__import__('os').system('touch pwned')"
    sweep = parse_sweep(SMALL_SWEEP, [f'study.name="{code}"', f'model.activation="{code}"'])
    assert sweep.study.name == code and sweep.model.params["activation"] == code
    with pytest.raises(SweepError, match=r"train.optimizer = \"__import__"):
        parse_sweep(SMALL_SWEEP, [f"train.optimizer={code}"])
    assert not (tmp_path / "pwned").exists()
