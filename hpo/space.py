"""Search-space specs of ``[search.space]`` → Optuna distributions, suggestions and grids.

A spec is a list (categorical: a grid axis) or a table ``{low, high, step?, log?}`` (an int range
when ``low``, ``high`` and ``step`` are integers, else a float range).

Example:
    >>> space = SearchSpace.parse({"width": [8, 16], "lr": {"low": 1e-4, "high": 0.1, "log": True}})
    >>> space["width"].distribution()
    CategoricalDistribution(choices=(8, 16))
    >>> space.is_grid
    False
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hpo._imports import LazyImport
from hpo.errors import SweepError, key_path

optuna = LazyImport("optuna")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Categorical:
    """A list of choices (``width = [8, 16]``): an axis of a grid."""

    choices: tuple[Scalar, ...]

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """Optuna's distribution for this parameter."""
        return optuna.distributions.CategoricalDistribution(self.choices)

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for a value of parameter ``name``."""
        return trial.suggest_categorical(name, self.choices)

    def values(self) -> tuple[Scalar, ...]:
        """Every choice (what the builder check builds, what a grid visits)."""
        return self.choices

    def choose(self, value: Any) -> tuple[bool, Any]:
        """(True, the choice equal to ``value``), or (False, what is allowed). A number equals
        a choice of the same value whether written as an integer or a float."""
        for choice in self.choices:
            same_type = type(value) is type(choice) or (_is_number(value) and _is_number(choice))
            if same_type and value == choice:
                return True, choice
        return False, "one of " + ", ".join(map(repr, self.choices))

    def to_toml(self) -> Any:
        """The spec as the sweep file writes it."""
        return list(self.choices)


@dataclass(frozen=True)
class Range:
    """``{low, high, step?, log?}``: an int range when low, high and step are integers, else a
    float range."""

    low: int | float
    high: int | float
    step: int | float | None = None
    log: bool = False

    @property
    def is_int(self) -> bool:
        """True for an integer range."""
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def distribution(self) -> optuna.distributions.BaseDistribution:
        """Optuna's distribution for this parameter."""
        if self.is_int:
            return optuna.distributions.IntDistribution(
                self.low, self.high, log=self.log, step=self.step or 1
            )
        return optuna.distributions.FloatDistribution(
            self.low, self.high, log=self.log, step=self.step
        )

    def suggest(self, trial: optuna.Trial, name: str) -> Any:
        """Ask ``trial`` for a value of parameter ``name``."""
        if self.is_int:
            return trial.suggest_int(name, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def values(self) -> tuple[int | float, int | float]:
        """The two ends (what the builder check builds)."""
        return (self.low, self.high)

    def choose(self, value: Any) -> tuple[bool, Any]:
        """(True, ``value``) when the range holds it (an integer for an integer range, on its
        step), else (False, what is allowed)."""
        step = f" in steps of {self.step} from {self.low}" if self.step else ""
        allowed = (f"{'an integer' if self.is_int else 'a number'} from {self.low} to "
                   f"{self.high}{step}")
        if not _is_number(value) or (self.is_int and not isinstance(value, int)):
            return False, allowed
        if not self.low <= value <= self.high:
            return False, allowed
        if self.step:
            steps = (value - self.low) / self.step
            if abs(steps - round(steps)) > 1e-9:
                return False, allowed
        return True, value

    def to_toml(self) -> Any:
        """The spec as the sweep file writes it."""
        spec = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            spec["step"] = self.step
        return spec


Param = Categorical | Range


def parse_param(path: str, spec: Any) -> Param:
    """Turn one ``[search.space]`` entry into a :data:`Param`, or raise :class:`SweepError`."""
    if isinstance(spec, list):
        if not spec:
            raise SweepError(f"{path} = []: expected a non-empty list of choices")
        for value in spec:
            if not isinstance(value, str | int | float | bool):
                raise SweepError(
                    f"{path} = {spec!r}: choices must be strings, numbers or booleans, "
                    f"not {type(value).__name__}"
                )
            if isinstance(value, float) and math.isnan(value):
                # nan differs from itself: no trial's value could be matched to its choice
                raise SweepError(f"{path} = {spec!r}: choices must be numbers, not nan")
        if len(set(map(repr, spec))) != len(spec):
            raise SweepError(f"{path} = {spec!r}: choices must be distinct")
        return Categorical(tuple(spec))
    if isinstance(spec, dict):
        unknown = set(spec) - {"low", "high", "step", "log"}
        if unknown:
            raise SweepError(
                f"{path}.{key_path(sorted(unknown)[0])}: unknown key; expected low, high, step, log"
            )
        for key in ("low", "high"):
            if key not in spec:
                raise SweepError(f"{path}: missing {key!r}; a range is {{low, high, step?, log?}}")
            if not _is_number(spec[key]):
                raise SweepError(f"{path}.{key} = {spec[key]!r}: expected a number")
        low, high, step, log = spec["low"], spec["high"], spec.get("step"), spec.get("log", False)
        if low > high:
            raise SweepError(f"{path}: low = {low!r} > high = {high!r}; expected low <= high")
        if not isinstance(log, bool):
            raise SweepError(f"{path}.log = {log!r}: expected true or false")
        if step is not None and (not _is_number(step) or step <= 0):
            raise SweepError(f"{path}.step = {step!r}: expected a number > 0")
        if log and step is not None:
            raise SweepError(f"{path}: step and log = true cannot be combined (Optuna)")
        if log and low <= 0:
            raise SweepError(f"{path}.low = {low!r}: a log range needs low > 0")
        return Range(low, high, step, log)
    raise SweepError(
        f"{path} = {spec!r}: expected a list of choices or a table {{low, high, step?, log?}}"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SearchSpace(Mapping[str, Param]):
    """The parameters a sweep samples, by name."""

    def __init__(self, params: Mapping[str, Param]) -> None:
        self._params = dict(params)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], path: str = "search.space") -> SearchSpace:
        """The space of a ``[search.space]`` table (SweepError naming ``path.<name>``)."""
        return cls({name: parse_param(f"{path}.{key_path(name)}", spec)
                    for name, spec in raw.items()})

    def __getitem__(self, name: str) -> Param:
        return self._params[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    @property
    def is_grid(self) -> bool:
        """True when every parameter is a list of choices, as Optuna's GridSampler needs."""
        return all(isinstance(p, Categorical) for p in self._params.values())

    def grid(self) -> dict[str, list[Scalar]]:
        """The grid for :class:`optuna.samplers.GridSampler` (only when :attr:`is_grid`)."""
        return {name: list(p.values()) for name, p in self._params.items()}

    def grid_size(self) -> int:
        """How many configurations the grid holds."""
        return math.prod(len(p.values()) for p in self._params.values())

    def edge_points(self) -> list[dict[str, Any]]:
        """Configurations that between them hold every choice and both ends of every range,
        the other parameters at their first value (what ``hpo`` builds before a sweep starts).

        Example:
            >>> space = SearchSpace.parse({"width": [2, 8, 256], "p": {"low": 0.0, "high": 0.5}})
            >>> [(point["width"], point["p"]) for point in space.edge_points()]
            [(2, 0.0), (8, 0.0), (256, 0.0), (2, 0.5)]
        """
        first = {name: p.values()[0] for name, p in self._params.items()}
        points = [first]
        for name, param in self._params.items():
            points += [{**first, name: v} for v in param.values()[1:]]
        return points

    def point(self, values: Any, path: str) -> dict[str, Any]:
        """``values`` (param name → value; some or all of the parameters) checked against the
        space, as a configuration to enqueue; SweepError naming ``path.<name>`` otherwise.

        Example:
            >>> space = SearchSpace.parse({"width": [8, 16], "lr": {"low": 0.001, "high": 0.1}})
            >>> space.point({"width": 16}, "search.enqueue[0]")
            {'width': 16}
            >>> space.point({"width": 12}, "search.enqueue[0]")
            Traceback (most recent call last):
            ...
            hpo.errors.SweepError: search.enqueue[0].width = 12: expected one of 8, 16
        """
        if not isinstance(values, dict) or not values:
            raise SweepError(f"{path} = {values!r}: expected a table of parameter = value, "
                             "e.g. {" + ", ".join(f"{n} = ..." for n in list(self)[:2]) + "}")
        point = {}
        for name, value in values.items():
            if name not in self._params:
                raise SweepError(f"{path}.{key_path(name)}: not a parameter of search.space; "
                                 "expected one of " + ", ".join(self._params))
            ok, chosen = self._params[name].choose(value)
            if not ok:
                raise SweepError(f"{path}.{key_path(name)} = {value!r}: expected {chosen}")
            point[name] = chosen
        return point

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for one value of every parameter."""
        return {name: p.suggest(trial, name) for name, p in self._params.items()}

    def to_toml(self) -> dict[str, Any]:
        """The ``[search.space]`` table as the sweep file writes it."""
        return {name: p.to_toml() for name, p in self._params.items()}
