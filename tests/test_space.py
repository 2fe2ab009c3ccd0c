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
