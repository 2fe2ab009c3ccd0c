"""Each bad sweep gives exactly one line: the key path, the value as written, and what is allowed.

The whole line is compared (tests/test_sweep.py checks fragments): a message that names the
wrong key, drops the value or says "None" is a bug a user meets first. Also the boundaries of
the checks (0 and 1, empty, bool as int) and what a valid sweep stores (defaults, identity).
"""

from __future__ import annotations

import importlib.util

import pytest

import hpo.sweep
from hpo.errors import SweepError
from hpo.sweep import load_sweep, parse_sweep

from conftest import SMALL_SWEEP

HISTORY = "loss, accuracy, val_loss, val_accuracy"
SEARCHABLE = "(searchable [train] keys: epochs, batch_size, optimizer, learning_rate, loss)"
IDENTIFIER = "expected a Python identifier, as it is passed to the builder as a keyword argument"
BEFORE_MODEL, MODEL_AND_AFTER = SMALL_SWEEP.split("[model]")

MESSAGES = [
    # [section] tables and their keys
    ("study = 5\n", "study = 5: expected a [section] table"),
    ("model = 5\n" + BEFORE_MODEL, "model = 5: expected a [model] table"),
    (SMALL_SWEEP.replace('builder = "mlp"', ""), "model.builder: missing; this key is required"),
    (SMALL_SWEEP.replace('[model]\nbuilder = "mlp"\n', ""),  # no [model] at all
     "model.builder: missing; this key is required"),
    (["train.epoch=3"], "train.epoch: unknown key; expected one of epochs, batch_size, optimizer, "
                        "learning_rate, loss, metrics, early_stopping, evaluate_test, "
                        "keep_models"),
    (["search.sampling='grid'"], "search.sampling: unknown key; expected one of sampler, "
                                 "n_trials, seed, pruner, space, enqueue"),
    # strings, choices, integers, numbers, booleans
    (["study.name=5"], "study.name = 5: expected a non-empty string"),
    (["study.name='  '"], "study.name = '  ': expected a non-empty string"),
    (["study.direction='up'"], "study.direction = 'up': expected one of maximize, minimize"),
    (["data.dataset=5"], "data.dataset = 5: expected a non-empty string"),
    (["model.builder=5"], "model.builder = 5: expected a non-empty string"),
    (["train.optimizer='adamm'"], "train.optimizer = 'adamm': expected one of adam, adamw, sgd,"
                                  " rmsprop, adagrad, adadelta, adamax, nadam, ftrl, lion"),
    (["train.epochs=true"], "train.epochs = True: expected an integer >= 1"),
    (["protocol.pack=0"], "protocol.pack = 0: expected an integer >= 1"),
    (["protocol.pack='yes'"], "protocol.pack = 'yes': expected an integer >= 1"),
    (["train.learning_rate=true"], "train.learning_rate = True: expected a number > 0"),
    (["train.learning_rate=inf"], "train.learning_rate = inf: expected a number > 0"),
    (["data.shuffle=1"], "data.shuffle = 1: expected true or false"),
    (["data.validation=0.0"], 'data.validation = 0.0: expected "test" or a fraction of the '
                              "training set between 0 and 1"),
    (["data.validation=1.0"], 'data.validation = 1.0: expected "test" or a fraction of the '
                              "training set between 0 and 1"),
    (["study.storage=''"], "study.storage = '': expected a non-empty string"),
    (["study.storage='postgresql://h:port/x'"], "study.storage = 'postgresql://h:port/x': "
                                                "expected an SQLAlchemy URL such as "
                                                "sqlite:///studies/x.db"),
    # metrics and early stopping
    (["train.metrics='accuracy'"], "train.metrics = 'accuracy': expected a list of metric names"),
    (["train.metrics=[1]"], "train.metrics = [1]: expected a list of metric names"),
    (["train.metrics=['f1x']"], "train.metrics = ['f1x']: unknown metric 'f1x'; expected any of "
                                "accuracy, auc, categorical_accuracy, mae, mse, precision, recall,"
                                " sparse_categorical_accuracy, sparse_top_k_categorical_accuracy, "
                                "top_k_categorical_accuracy"),
    (["train.early_stopping=5"], "train.early_stopping = 5: expected a table {monitor, patience, "
                                 "restore_best_weights, min_delta}"),
    (["train.early_stopping={wait=1}"], "train.early_stopping.wait: unknown key; expected one of "
                                        "monitor, patience, min_delta, restore_best_weights"),
    (["train.early_stopping={min_delta=-0.1}"],
     "train.early_stopping.min_delta = -0.1: expected a number >= 0"),
    (["train.early_stopping={min_delta=true}"],
     "train.early_stopping.min_delta = True: expected a number >= 0"),
    (["train.early_stopping={min_delta=inf}"],
     "train.early_stopping.min_delta = inf: expected a number >= 0"),
    (["train.early_stopping={min_delta='a'}"],
     "train.early_stopping.min_delta = 'a': expected a number >= 0"),
    (["train.early_stopping={patience=-1}"],
     "train.early_stopping.patience = -1: expected an integer >= 0"),
    (["train.early_stopping={restore_best_weights=1}"],
     "train.early_stopping.restore_best_weights = 1: expected true or false"),
    (["train.early_stopping={monitor=''}"],
     "train.early_stopping.monitor = '': expected a non-empty string"),
    (["train.early_stopping={monitor='val_f1'}"],
     f"train.early_stopping.monitor = 'val_f1': expected a per-epoch history key: {HISTORY}"),
    (["train.early_stopping={monitor='test_loss'}", "train.evaluate_test=true"],  # not per epoch
     f"train.early_stopping.monitor = 'test_loss': expected a per-epoch history key: {HISTORY}"),
    # targets: sparse losses take integer labels, the others one-hot targets
    (["train.loss='mse'", "train.metrics=['sparse_categorical_accuracy']"],
     "train.metrics: metric 'sparse_categorical_accuracy' does not fit loss 'mse' (one-hot "
     "targets); use 'accuracy'"),
    (["train.metrics=['categorical_accuracy']"],
     "train.metrics: metric 'categorical_accuracy' does not fit loss "
     "'sparse_categorical_crossentropy' (integer labels); use 'accuracy'"),
    # the model's keywords
    (BEFORE_MODEL + '[model]\n"a b" = 1' + MODEL_AND_AFTER, f"model.'a b': {IDENTIFIER}"),
    (["model.when=1979-05-27"], "model.when = datetime.date(1979, 5, 27): expected strings, "
                                "numbers (not nan), booleans, or lists or tables of them; no "
                                "dates or times"),
    (["model.width=2.5"], "model.width = 2.5: expected an integer, as builder 'mlp' annotates "
                          "width"),
    (["search.space.width=[4, 2.5]"], "search.space.width = 2.5: expected an integer, as builder "
                                      "'mlp' annotates width"),
    # the search
    (SMALL_SWEEP.split("[search.space]")[0] + "[search]\nspace = 5\n",
     "search.space = 5: expected a [search.space] table or 'package.module:function'"),
    (SMALL_SWEEP.split("width =")[0],
     "search.space = {}: empty; name at least one parameter or drop the table"),
    (["search.space.builder=['mlp']"],
     f"search.space.builder: 'builder' cannot be searched; set it in its section {SEARCHABLE}"),
    (["search.space.metrics=['accuracy']"],
     f"search.space.metrics: 'metrics' cannot be searched; set it in its section {SEARCHABLE}"),
    (["search.space.early_stopping=[1]"], "search.space.early_stopping: 'early_stopping' cannot "
                                          f"be searched; set it in its section {SEARCHABLE}"),
    (SMALL_SWEEP + '"a-b" = [1]\n', f"search.space.a-b: {IDENTIFIER}"),
    (["search.space.loss=['mse', 'sparse_categorical_crossentropy']",
      "train.metrics=['sparse_categorical_accuracy']"],
     "search.space.loss: metric 'sparse_categorical_accuracy' does not fit loss 'mse' (one-hot "
     "targets); use 'accuracy'"),
    # across sections
    (["protocol.min_repeats=4"],
     "protocol.min_repeats = 4: expected an integer from 1 to protocol.repeats = 3"),
    (["study.objective='val_f1'"],
     f"study.objective = 'val_f1': expected a history key of this sweep: {HISTORY} (or a run "
     "measure: params, epoch_seconds)"),
    (["search.pruner='median'", "train.evaluate_test=true", "study.objective='test_accuracy'"],
     "search.pruner = 'median': expected \"none\" with study.objective = 'test_accuracy' "
     "(measured once, after training, so there is no curve to prune on)"),
]


@pytest.mark.parametrize(("case", "message"), MESSAGES)
def test_a_bad_sweep_is_one_exact_line(case, message):
    text, overrides = (case, []) if isinstance(case, str) else (SMALL_SWEEP, case)
    with pytest.raises(SweepError) as error:
        parse_sweep(text, overrides)
    assert str(error.value) == message


def test_an_unknown_section_lists_the_known_ones():
    with pytest.raises(SweepError) as error:
        parse_sweep(SMALL_SWEEP + "\n[trainer]\nepochs = 3\n")
    head, _, known = str(error.value).partition("; expected ")
    assert head == "[trainer]: unknown section"
    assert set(known.split(", ")) == {"[study]", "[data]", "[model]", "[train]", "[protocol]",
                                      "[search]"}


@pytest.mark.parametrize(
    "overrides",
    [["data.limit_train=0"], ["protocol.pack=1"], ["data.validation=0.5"],
     ["train.early_stopping={min_delta=0}"], ["train.early_stopping={patience=0}"],
     ["train.early_stopping={monitor='val_loss'}", "train.evaluate_test=true"],
     ["protocol.min_repeats=3"],
     ["train.loss='mse'", "search.space.loss=['mse']", "train.metrics=['mae']",
      "study.objective='val_mae'"]],
)
def test_the_boundaries_of_each_check_are_accepted(overrides):
    parse_sweep(SMALL_SWEEP, overrides)


def test_early_stopping_fills_in_keras_defaults():
    sweep = parse_sweep(SMALL_SWEEP, ["train.early_stopping={min_delta=0.01}"])
    assert sweep.train.early_stopping == {"monitor": "val_loss", "patience": 0,
                                          "restore_best_weights": False, "min_delta": 0.01}
    sweep = parse_sweep(SMALL_SWEEP, ["train.early_stopping={patience=3, monitor='loss'}"])
    assert sweep.train.early_stopping == {"monitor": "loss", "patience": 3,
                                          "restore_best_weights": False}


@pytest.mark.parametrize(("sampler", "package"), [("cmaes", "cmaes"), ("gp", "torch")])
def test_a_sampler_without_its_package_is_refused(monkeypatch, sampler, package):
    overrides = [f"search.sampler='{sampler}'", "search.n_trials=2"]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())  # installed
    assert parse_sweep(SMALL_SWEEP, overrides).search.sampler == sampler
    asked: list[str] = []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: asked.append(name))  # missing
    with pytest.raises(SweepError) as error:
        parse_sweep(SMALL_SWEEP, overrides)
    assert str(error.value) == (f"search.sampler = '{sampler}': needs the package {package!r} "
                                f"(pip install {package})")
    assert asked == [package]
    assert parse_sweep(SMALL_SWEEP, ["search.sampler='random'", "search.n_trials=2"])


def test_a_sweep_file_names_itself_in_errors_and_in_the_sweep(tmp_path):
    path = tmp_path / "s.toml"
    with pytest.raises(SweepError) as error:
        load_sweep(path)
    assert str(error.value) == f"{path}: cannot read the sweep file (No such file or directory)"
    path.write_text(SMALL_SWEEP)
    assert load_sweep(path, ["train.epochs=3"]).train.epochs == 3
    assert load_sweep(path).path == str(path)
    assert parse_sweep(SMALL_SWEEP, source="mine").path == "mine"
    path.write_text("[study")
    with pytest.raises(SweepError, match=f"^{path}: not valid TOML \\("):
        load_sweep(path)
    with pytest.raises(SweepError, match="^<sweep>: not valid TOML \\("):
        parse_sweep("[study")


def test_the_stored_identity_keeps_its_keys():
    # A study stores this dict and compares it on every resume: renaming a key would make every
    # existing study refuse its own sweep.
    identity = parse_sweep(SMALL_SWEEP, ["search.pruner='median'",
                                         "search.space.lr={low=0.001, high=0.1, log=true}",
                                         "search.sampler='random'", "search.n_trials=4"]).identity()
    assert identity == {
        "study.objective": "val_accuracy",
        "study.reduce": "last",
        "data": {"dataset": "mnist", "validation": "test", "limit_train": 300, "limit_test": 200,
                 "shuffle": False},
        "model": {"builder": "mlp"},
        "train": {"epochs": 2, "batch_size": 32, "optimizer": "adam", "learning_rate": 0.01,
                  "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                  "early_stopping": None, "evaluate_test": False},
        "protocol": {"repeats": 3, "seed": 0, "min_repeats": 3, "pack": True},
        "search": {"sampler": "random", "seed": 0, "pruner": "median"},
        "search.space": {"width": [4, 16], "lr": {"low": 0.001, "high": 0.1, "log": True}},
    }


def test_the_integer_checks_refuse_booleans_and_take_zero_where_allowed():
    assert parse_sweep(SMALL_SWEEP, ["data.limit_test=0"]).data.limit_test == 0
    with pytest.raises(SweepError, match=r"^data.limit_test = False: expected an integer >= 0$"):
        parse_sweep(SMALL_SWEEP, ["data.limit_test=false"])
    assert hpo.sweep._integer(0)("x", 0) == 0
