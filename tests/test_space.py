import re

import optuna
import pytest

from hpo.errors import SweepError
from hpo.space import SearchSpace


def test_specs_become_optuna_distributions():
    space = SearchSpace.parse(
        {
            "width": [2, 4],
            "layers": {"low": 0, "high": 3},
            "lr": {"low": 1e-4, "high": 1e-1, "log": True},
            "dropout": {"low": 0.0, "high": 0.8, "step": 0.2},
        }
    )
    d = {name: p.distribution() for name, p in space.items()}
    assert d["width"] == optuna.distributions.CategoricalDistribution((2, 4))
    assert d["layers"] == optuna.distributions.IntDistribution(0, 3)
    assert d["lr"] == optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    assert d["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.8, step=0.2)
    assert not space.is_grid


def test_grid_and_its_size():
    space = SearchSpace.parse({"a": [1, 2, 3], "b": ["x", "y"]})
    assert space.is_grid and space.grid_size() == 6
    assert space.grid() == {"a": [1, 2, 3], "b": ["x", "y"]}


def test_suggest_draws_inside_the_space():
    space = SearchSpace.parse({"w": [8, 16], "lr": {"low": 0.001, "high": 0.1, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = space.suggest(study.ask())
        assert params["w"] in (8, 16) and 0.001 <= params["lr"] <= 0.1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([], "non-empty"),
        ({"low": 3, "high": 1}, "low = 3 > high = 1"),
        ({"low": 0, "high": 1, "log": True}, "log range needs low > 0"),
        ({"low": 0.1, "high": 1, "log": True, "step": 0.1}, "cannot be combined"),
        ({"low": 0}, "missing 'high'"),
        ({"low": 0, "high": 1, "stp": 1}, "unknown key"),
        ([[1], [2]], "strings, numbers or booleans"),
        ([1, 1], "distinct"),
        ([1.0, float("nan")], "not nan"),
        (5, "expected a list of choices or a table"),
    ],
)
def test_bad_specs_name_the_key(spec, message):
    with pytest.raises(SweepError, match="search.space.x") as info:
        SearchSpace.parse({"x": spec})
    assert message in str(info.value)


def test_a_name_with_a_line_break_is_quoted_so_the_message_stays_one_line():
    with pytest.raises(SweepError) as info:
        SearchSpace.parse({"a\nb": 5, "ok": {"low": 0, "high": 1, "x\ny": 2}})
    assert str(info.value).startswith("search.space.'a\\nb' = 5: expected a list")
    with pytest.raises(SweepError) as info:
        SearchSpace.parse({"ok": {"low": 0, "high": 1, "x\ny": 2}})
    assert str(info.value).startswith("search.space.ok.'x\\ny': unknown key")


def test_suggest_asks_optuna_for_each_parameter_with_its_own_distribution():
    # What Optuna records for the trial is what the sampler models: the distribution must be
    # the spec's, under the spec's name (a log or stepped range sampled as a plain one is not
    # the experiment the sweep file describes).
    space = SearchSpace.parse({
        "width": [8, 16],
        "layers": {"low": 0, "high": 3},
        "units": {"low": 2, "high": 10, "step": 2},
        "filters": {"low": 1, "high": 64, "log": True},
        "dropout": {"low": 0.0, "high": 0.8, "step": 0.2},
        "lr": {"low": 1e-4, "high": 1e-1, "log": True},
        "decay": {"low": 0.5, "high": 1.0},
    })
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        trial = study.ask()
        params = space.suggest(trial)
        assert trial.distributions == {name: p.distribution() for name, p in space.items()}
        assert params == trial.params
        assert params["units"] % 2 == 0 and 2 <= params["units"] <= 10
        assert min(abs(params["dropout"] - v) for v in (0.0, 0.2, 0.4, 0.6, 0.8)) < 1e-9
    assert space["filters"].distribution() == optuna.distributions.IntDistribution(1, 64, log=True)
    assert space["units"].distribution() == optuna.distributions.IntDistribution(2, 10, step=2)


@pytest.mark.parametrize(
    ("spec", "toml"),
    [
        ({"low": 0.0, "high": 0.8, "step": 0.2}, {"low": 0.0, "high": 0.8, "log": False,
                                                   "step": 0.2}),
        ({"low": 1e-4, "high": 0.1, "log": True}, {"low": 1e-4, "high": 0.1, "log": True}),
        ({"low": 1, "high": 3}, {"low": 1, "high": 3, "log": False}),
        ([2, "a", True], [2, "a", True]),
    ],
)
def test_to_toml_writes_the_spec_back(spec, toml):
    space = SearchSpace.parse({"x": spec})
    assert space.to_toml() == {"x": toml}
    assert SearchSpace.parse(space.to_toml())["x"] == space["x"]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ([[1]], "search.space.x = [[1]]: choices must be strings, numbers or booleans, not list"),
        ({"low": "a", "high": 1}, "search.space.x.low = 'a': expected a number"),
        ({"low": 0, "high": True}, "search.space.x.high = True: expected a number"),
        ({"low": 0, "high": float("inf")}, "search.space.x.high = inf: expected a number"),
        ({"low": 0, "high": 1, "log": 1}, "search.space.x.log = 1: expected true or false"),
        ({"low": 0, "high": 1, "step": 0}, "search.space.x.step = 0: expected a number > 0"),
        ({"low": 0, "high": 1, "step": -1}, "search.space.x.step = -1: expected a number > 0"),
        ({"low": 0, "high": 1, "step": "a"}, "search.space.x.step = 'a': expected a number > 0"),
    ],
)
def test_bad_ranges_are_one_exact_line(spec, message):
    with pytest.raises(SweepError) as info:
        SearchSpace.parse({"x": spec})
    assert str(info.value) == message


def test_a_range_of_one_value_is_allowed():
    assert SearchSpace.parse({"x": {"low": 2, "high": 2}})["x"].values() == (2, 2)


def test_edge_points_hold_every_choice_and_both_ends_with_the_others_first():
    space = SearchSpace.parse({"a": [1, 2, 3], "b": {"low": 0.0, "high": 5.0}, "c": ["x", "y"]})
    assert space.edge_points() == [
        {"a": 1, "b": 0.0, "c": "x"}, {"a": 2, "b": 0.0, "c": "x"}, {"a": 3, "b": 0.0, "c": "x"},
        {"a": 1, "b": 5.0, "c": "x"},
        {"a": 1, "b": 0.0, "c": "y"},
    ]
    assert SearchSpace({}).edge_points() == [{}]


# --- Conditional parameters (when) --------------------------------------------------------------

CONDITIONAL = {
    "layers": {"low": 1, "high": 3},
    "width_1": [8, 32],
    "width_2": {"low": 8, "high": 128, "log": True, "when": {"layers": {"min": 2}}},
    "optimizer": ["adam", "sgd"],
    "momentum": {"choices": [0.0, 0.9], "when": {"optimizer": "sgd", "layers": {"in": [1, 3]}}},
}


def test_a_conditional_parameter_is_suggested_only_when_its_condition_holds():
    space = SearchSpace.parse(CONDITIONAL)
    assert space.conditional == ["width_2", "momentum"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(120):
        trial = study.ask()
        values = space.suggest(trial)
        assert ("width_2" in values) == (values["layers"] >= 2)
        assert ("momentum" in values) == (values["optimizer"] == "sgd"
                                          and values["layers"] in (1, 3))
        assert set(trial.params) == set(values)  # nothing else was asked of Optuna
        seen.append(values)
        study.tell(trial, 0.0)
    assert {("width_2" in v, "momentum" in v) for v in seen} == {
        (False, False), (True, False), (False, True), (True, True)}


def test_a_conditional_space_writes_back_as_it_was_read():
    space = SearchSpace.parse(CONDITIONAL)
    assert SearchSpace.parse(space.to_toml()).to_toml() == space.to_toml()
    assert space.to_toml()["momentum"] == {
        "choices": [0.0, 0.9], "when": {"optimizer": "sgd", "layers": {"in": [1, 3]}}}
    # Without conditions the stored form is unchanged (older studies' identities still match).
    assert SearchSpace.parse({"width": [8, 16]}).to_toml() == {"width": [8, 16]}


def test_the_builder_check_reaches_every_value_of_a_conditional_parameter():
    points = SearchSpace.parse(CONDITIONAL).edge_points()
    assert {p["width_2"] for p in points if "width_2" in p} == {8, 128}
    assert {p["momentum"] for p in points if "momentum" in p} == {0.0, 0.9}
    for point in points:  # each point is a configuration a trial could have
        assert ("width_2" in point) == (point["layers"] >= 2)


@pytest.mark.parametrize(("when", "expected"), [
    ({"depth": {"min": 2}}, "when.depth: not a parameter declared before this one"),
    ({"layers": {"least": 2}}, "when.layers = {'least': 2}: expected a value, or a table of"),
    ({"layers": {"min": "two"}}, "when.layers.min = 'two': expected a number"),
    ({"layers": {"min": 5}}, "never holds"),
    ({"layers": {"in": []}}, "when.layers.in = []: expected a non-empty list"),
    ("layers > 1", "expected a table of earlier parameters"),
])
def test_bad_conditions_name_the_key(when, expected):
    with pytest.raises(SweepError, match=re.escape(expected)):
        SearchSpace.parse({"layers": {"low": 1, "high": 3},
                           "width_2": {"low": 8, "high": 64, "when": when}})


def test_a_condition_on_a_conditional_parameter_is_reached_through_its_own():
    space = SearchSpace.parse({
        "layers": {"low": 1, "high": 3},
        "width_2": {"choices": [32, 64], "when": {"layers": {"min": 2}}},
        "width_3": {"choices": [16, 128], "when": {"width_2": 64}},
    })
    points = space.edge_points()
    assert {p["width_3"] for p in points if "width_3" in p} == {16, 128}
    assert all(p["layers"] >= 2 and p["width_2"] == 64 for p in points if "width_3" in p)
    with pytest.raises(SweepError, match="never holds"):  # width_2 exists only from 2 layers
        SearchSpace.parse({"layers": {"low": 1, "high": 3},
                           "width_2": {"choices": [32, 64], "when": {"layers": {"min": 2}}},
                           "x": {"choices": [1, 2], "when": {"layers": 1, "width_2": 32}}})


def test_a_condition_tells_booleans_from_numbers():
    space = SearchSpace.parse({"flag": [0, 1], "x": {"choices": [1, 2], "when": {"flag": 1}}})
    assert space["x"].when.holds({"flag": 1}) and not space["x"].when.holds({"flag": True})
    with pytest.raises(SweepError, match="never holds"):
        SearchSpace.parse({"flag": [0, 1], "x": {"choices": [1, 2], "when": {"flag": True}}})


def test_an_enqueued_point_keeps_to_the_conditions_and_the_float_ranges():
    space = SearchSpace.parse(CONDITIONAL | {"dropout": {"low": 0.0, "high": 0.5}})
    assert space.point({"layers": 2, "width_2": 64}, "e") == {"layers": 2, "width_2": 64}
    dropout = space.point({"dropout": 0}, "e")["dropout"]
    assert dropout == 0.0 and isinstance(dropout, float)  # as Optuna suggests it
    with pytest.raises(SweepError, match=re.escape(
            "e.width_2 = 64: its condition {'layers': {'min': 2}} does not hold for layers = 1")):
        space.point({"layers": 1, "width_2": 64}, "e")
    with pytest.raises(SweepError, match="e.width_2 = 64: its condition tests layers; give it"):
        space.point({"width_2": 64}, "e")
