"""Sweep files: parsing, defaults, overrides, and one-line errors for bad input."""

from __future__ import annotations

import json
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


def test_a_sweep_file_that_is_not_utf8_is_one_line_naming_the_byte_and_line(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(SMALL_SWEEP.replace('"small"', '"café"').encode("latin-1"))
    with pytest.raises(SweepError) as info:
        load_sweep(path)
    message = str(info.value)
    assert message == (f"{path}: byte b'\\xe9' on line 3 is not UTF-8; expected a TOML file in "
                       "UTF-8 (save it as UTF-8)")
    path.write_bytes(SMALL_SWEEP.replace('"small"', '"café"').encode())
    assert load_sweep(path).study.name == "café"  # UTF-8 whatever the locale


@pytest.mark.parametrize("name", ["../../x", "a/b", "a\\b", ".x", "..", "-x", "%2e%2e%2fx",
                                  "x?mode=ro", "a b", "x" * 101, "é"])
def test_a_study_name_that_is_not_a_plain_file_name_has_no_default_storage(name):
    sweep = parse_sweep(SMALL_SWEEP, [f"study.name={json.dumps(name)}"])
    assert sweep.study.name == name
    with pytest.raises(SweepError) as info:
        _ = sweep.storage_url
    assert str(info.value).startswith(f"study.name = {name!r}: expected letters, digits")
    assert "\n" not in str(info.value)
    # With a storage URL the name is only a value in Optuna's tables: any name is fine.
    explicit = parse_sweep(SMALL_SWEEP, [f"study.name={json.dumps(name)}",
                                         "study.storage='sqlite:///s.db'"])
    assert explicit.storage_url == "sqlite:///s.db"


@pytest.mark.parametrize("name", ["small", "mnist-q6-width", "run_2.b", "_x", "x" * 100])
def test_plain_study_names_give_a_database_inside_studies(name):
    assert parse_sweep(SMALL_SWEEP, [f"study.name='{name}'"]).storage_url == (
        f"sqlite:///studies/{name}.db")


@pytest.mark.parametrize(
    "override",
    ["protocol.min_repeats=2", "search.pruner='median'", "search.seed=7",
     "search.sampler='random'", "protocol.seed=1", "protocol.repeats=4", "train.epochs=3",
     "data.limit_train=10", "model.width=8", "search.space.width=[4, 8]",
     "protocol.pack=false"],
)
def test_settings_that_change_the_numbers_change_the_identity(override):
    extra = ["search.n_trials=2"] if "sampler" in override else []
    if "pack" in override:  # with a pruner, packing decides which seeds' mean it judges
        extra.append("search.pruner='median'")
    base, other = parse_sweep(SMALL_SWEEP, extra), parse_sweep(SMALL_SWEEP, [override, *extra])
    assert base.identity() != other.identity()


@pytest.mark.parametrize("override", ["protocol.pack=false", "protocol.pack=2",
                                      "search.seed=0", "search.n_trials=9",
                                      "protocol.min_repeats=3"])
def test_settings_that_do_not_change_the_numbers_keep_the_identity(override):
    # pack without a pruner: speed only; search.seed = protocol.seed and min_repeats = repeats
    # are the defaults.
    assert parse_sweep(SMALL_SWEEP, [override]).identity() == parse_sweep(SMALL_SWEEP).identity()


def test_the_identity_names_pruner_sampler_and_min_repeats_by_their_keys():
    identity = parse_sweep(SMALL_SWEEP).identity()
    assert identity["search"] == {"sampler": "grid", "seed": 0, "pruner": "none"}
    assert identity["protocol"] == {"repeats": 3, "seed": 0, "min_repeats": 3}


def _annotated(input_shape: tuple[int, ...], n_classes: int, *, units: int = 4,
               sizes: list[int] | None = None, rate: float = 0.1, name: str = "x", **extra):
    """A user's builder: its annotations say which keywords take integers."""


@pytest.fixture
def annotated(monkeypatch):
    from hpo.models import builders

    monkeypatch.setitem(builders._entries, "annotated", _annotated)
    return ["model.builder='annotated'"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.units=2.5"], "model.units = 2.5: expected an integer, as builder 'annotated' "
                              "annotates units"),
        (["model.units=true"], "model.units = True: expected an integer"),
        (["model.units='8'"], "model.units = '8': expected an integer"),
        (["model.sizes=[8, 2.0]"], "model.sizes = [8, 2.0]: expected a list of integers"),
        (["model.sizes=8"], "model.sizes = 8: expected a list of integers"),
        (["search.space.units=[8, 16.0]"], "search.space.units = 16.0: expected an integer"),
        (["search.space.units={low=1.5, high=4.0}", "search.sampler='tpe'", "search.n_trials=2"],
         "search.space.units = {'low': 1.5, 'high': 4.0}: expected an integer range"),
        (["search.space.units={low=1, high=8, step=0.5}", "search.sampler='tpe'",
          "search.n_trials=2"], "search.space.units = {'low': 1, 'high': 8, 'step': 0.5}"),
        (["search.space.sizes={low=1, high=8}", "search.sampler='tpe'", "search.n_trials=2"],
         "search.space.sizes = {'low': 1, 'high': 8}: expected a list of integers, which cannot "
         "be a search choice"),
    ],
)
def test_a_builders_int_keywords_refuse_non_integers(annotated, overrides, fragment):
    with pytest.raises(SweepError) as info:
        parse_sweep(SMALL_SWEEP, [*annotated, *overrides])
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_a_builders_int_keywords_take_integers_and_other_keywords_are_left_to_it(annotated):
    sweep = parse_sweep(SMALL_SWEEP, [
        *annotated, "model.sizes=[8, 16]", "model.rate=1", "model.name=3", "model.extra=2.5",
        "search.space={units={low=1, high=9, step=2}, rate={low=0.0, high=0.5}}",
        "search.sampler='random'", "search.n_trials=2"])
    assert sweep.model.params == {"sizes": [8, 16], "rate": 1, "name": 3, "extra": 2.5}


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["model.width=2.5"], "model.width = 2.5: expected an integer, as builder 'mlp'"),
        (["search.space.width=[4, 2.87]"], "search.space.width = 2.87: expected an integer"),
        (["search.space.layers={low=0.0, high=3.0}", "search.sampler='random'",
          "search.n_trials=2"], "search.space.layers = {'low': 0.0, 'high': 3.0}"),
        (["model.hidden=[128, 128.5]"], "model.hidden = [128, 128.5]: expected a list of integers"),
        (["model.builder='cnn'", "search.space={dense=[64]}"],
         "search.space.dense = 64: expected a list of integers"),
        (["model.builder='transformer'", "search.space={head_size=[4, 8.0]}"],
         "search.space.head_size = 8.0"),
        (["model.builder='transformer'", "search.space={ff_dim=[2]}", "model.num_blocks=1.0"],
         "model.num_blocks = 1.0"),
    ],
)
def test_the_shipped_builders_int_keywords_refuse_non_integers(overrides, fragment):
    with pytest.raises(SweepError) as info:
        parse_sweep(SMALL_SWEEP, overrides)
    assert fragment in str(info.value)


@pytest.mark.parametrize("override", ["model.when=1979-05-27", "model.hidden=[nan]",
                                      "model.x={a=07:32:00}"])
def test_builder_values_are_json_and_equal_to_themselves(override):
    # The identity is stored as JSON and compared on resume: no dates, no nan.
    with pytest.raises(SweepError, match="expected strings, numbers \\(not nan\\)"):
        parse_sweep(SMALL_SWEEP, [override])


@pytest.mark.parametrize("override", ["model.'a b'=1", "search.space.'a-b'=[1]"])
def test_builder_keywords_are_python_identifiers(override):
    with pytest.raises(SweepError, match="expected a Python identifier"):
        parse_sweep(SMALL_SWEEP, [override])


@pytest.mark.parametrize("name", ["early_stopping", "evaluate_test", "metrics"])
def test_train_keys_that_cannot_be_searched_are_refused(name):
    with pytest.raises(SweepError, match=f"search.space.{name}: '{name}' cannot be searched"):
        parse_sweep(SMALL_SWEEP, [f"search.space.{name}=[true, false]"])


def test_keys_with_line_breaks_are_quoted_in_the_one_line_message():
    with pytest.raises(SweepError) as info:
        parse_sweep('[study]\n"a\\nb" = 1\n')
    assert str(info.value).startswith("study.'a\\nb': unknown key")


def test_validation_does_not_import_keras():
    # Reading the shipped builders' signatures must not cost Keras' import (seconds).
    code = ("import sys; from hpo.sweep import parse_sweep; from conftest import SMALL_SWEEP; "
            "parse_sweep(SMALL_SWEEP, ['model.builder=\"transformer\"', "
            "'search.space={head_size=[4]}']); print('keras' in sys.modules)")
    tests = Path(__file__).resolve().parent
    result = subprocess.run([sys.executable, "-c", code], cwd=tests, capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
