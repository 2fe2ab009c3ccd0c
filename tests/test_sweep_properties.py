"""Property: whatever TOML value sits in whatever key, validation gives a Sweep or one line.

Hypothesis puts arbitrary TOML values (strings, integers, floats with nan and inf, booleans,
dates and times, arrays, tables) into the keys of a valid sweep, known and unknown, and into
``--set`` overrides. ``parse_sweep`` must return a :class:`~hpo.sweep.Sweep` or raise a
:class:`~hpo.errors.SweepError` whose message is exactly one line; any other exception is a
crash the CLI would print as exit 1 with "--debug shows the traceback". A valid sweep must also
survive what the runner does with it before training: its identity through JSON (stored on the
study, compared on resume), its storage URL, trial budget and Optuna distributions.

``derandomize=True`` and no example database keep CI deterministic.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import tomllib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo.config import Sweep
from hpo.errors import SweepError
from hpo.sweep import _SECTIONS, parse_sweep

from conftest import SMALL_SWEEP

BASE = tomllib.loads(SMALL_SWEEP)
PROPERTY = settings(max_examples=300, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

# Every key the format knows, builder keywords of the shipped builders, nested tables, and
# keys and sections it does not know; a path of one part replaces a whole section.
KEYS = [
    *((section, key) for section, keys in _SECTIONS.items() for key in keys),
    *(("model", key) for key in ("builder", "width", "layers", "hidden", "dropout",
                                 "activation", "output_activation", "width_1", "dense", "stack",
                                 "head_size", "num_heads", "mlp_units", "a b")),
    *(("search", "space", key) for key in ("width", "layers", "dropout", "learning_rate",
                                           "epochs", "batch_size", "optimizer", "loss",
                                           "metrics", "early_stopping", "builder", "x\ny")),
    ("search", "space"), ("search", "space", "width", "low"), ("search", "space", "width", "step"),
    ("search", "space", "width", "log"), ("search", "space", "width", "other"),
    ("train", "early_stopping", "monitor"), ("train", "early_stopping", "patience"),
    ("train", "early_stopping", "min_delta"), ("train", "early_stopping", "other"),
    ("study", "unknown"), ("data", "dataset", "deeper"),
    ("study",), ("data",), ("model",), ("train",), ("protocol",), ("search",), ("unknown",),
]

# Values near the valid ones reach the checks behind the type checks.
NEAR_VALID = st.sampled_from([
    "mlp", "cnn", "transformer", "hpo.models.mlp:build", ":build", "..x:y", "nosuchmodule:f",
    "mnist", "hpo.datasets.mnist:load", "adam", "sgd", "mse", "accuracy", "val_accuracy",
    "val_loss", "test_accuracy", "loss", "grid", "random", "tpe", "qmc", "median",
    "hyperband", "last", "best", "maximize", "minimize", "test", "../../x", "%2e%2e%2fx",
    "sqlite:///x.db", "postgresql://h:port/x", "", " ", "relu", "base", "deep", "post",
])
SCALARS = st.one_of(
    NEAR_VALID,
    st.text(st.characters(exclude_categories=("Cs",)), max_size=12),
    st.integers(-3, 300),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.2, 0.5, 1.0, 1.5, 1e-4]),
    st.booleans(),
    st.datetimes(),
    st.dates(),
    st.times(),
)
KEY_TEXT = st.one_of(st.sampled_from(["low", "high", "step", "log", "monitor", "patience",
                                      "min_delta", "x"]),
                     st.text(st.characters(exclude_categories=("Cs",)), max_size=6))
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEY_TEXT, children,
                                                                       max_size=4),
    max_leaves=8,
)
MUTATIONS = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=3)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    def escape(char: str) -> str:
        if char in '"\\':
            return "\\" + char
        if ord(char) < 0x20 or ord(char) == 0x7F:
            return f"\\u{ord(char):04x}"
        return char

    return '"' + "".join(map(escape, text)) + '"'


def toml_value(value) -> str:
    """``value`` as an inline TOML value (what tomllib reads back as ``value``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(map(toml_value, value)) + "]"
    if isinstance(value, dict):
        items = (f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    raise TypeError(type(value))


def toml_document(raw: dict) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in raw.items())


def mutated(mutations) -> dict:
    raw = copy.deepcopy(BASE)
    for path, value in mutations:
        table = raw
        for part in path[:-1]:
            if not isinstance(table.get(part), dict):
                table[part] = {}
            table = table[part]
        table[path[-1]] = value
    return raw


def assert_one_line(error: SweepError) -> None:
    message = str(error)
    assert message and message.splitlines() == [message], message


def assert_usable(sweep: Sweep) -> None:
    """What the runner reads from a valid sweep before training works (or is one line)."""
    assert isinstance(sweep, Sweep)
    stored = json.loads(json.dumps(sweep.identity()))  # as open_study stores it
    assert stored == json.loads(json.dumps(sweep.identity()))  # so a resume can match it
    try:
        assert sweep.storage_url
    except SweepError as error:  # a study name that cannot be a file name
        assert_one_line(error)
    assert sweep.n_trials >= 1
    assert sweep.study.objective in sweep.history_keys
    for param in sweep.search.space.values():
        param.distribution()
    assert sweep.search.space.edge_points()


def test_the_renderer_writes_what_tomllib_reads():
    assert tomllib.loads(toml_document(BASE)) == BASE


@PROPERTY
@given(MUTATIONS)
def test_any_toml_value_in_any_key_is_a_sweep_or_a_one_line_error(mutations):
    text = toml_document(mutated(mutations))
    tomllib.loads(text)  # the renderer writes valid TOML: validation, not parsing, is tested
    try:
        sweep = parse_sweep(text)
    except SweepError as error:
        assert_one_line(error)
    else:
        assert_usable(sweep)


OVERRIDE_PATHS = st.sampled_from([".".join(path) for path in KEYS if "\n" not in path[-1]])


@PROPERTY
@given(st.lists(
    st.one_of(
        st.builds(lambda path, value: f"{path}={toml_value(value)}", OVERRIDE_PATHS, VALUES),
        st.builds(lambda path, text: f"{path}={text}", OVERRIDE_PATHS,
                  st.text(st.characters(exclude_categories=("Cs",)), max_size=10)),
        st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
    ),
    min_size=1, max_size=3,
))
def test_any_override_is_a_sweep_or_a_one_line_error(overrides):
    try:
        sweep = parse_sweep(SMALL_SWEEP, overrides)
    except SweepError as error:
        assert_one_line(error)
    else:
        assert_usable(sweep)
