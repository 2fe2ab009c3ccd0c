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

import dataclasses
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hpo._imports import LazyImport
from hpo.errors import SweepError, key_path

optuna = LazyImport("optuna")

Scalar = str | int | float | bool


@dataclass(frozen=True)
class Condition:
    """``when = { layers = { min = 2 } }``: a parameter is suggested only when every test on
    the parameters declared before it holds. A test is a value (equal to it) or a table of
    ``min``, ``max`` (inclusive) and ``in`` (one of a list)."""

    tests: tuple[tuple[str, str, Any], ...]  # (parameter, "eq" | "min" | "max" | "in", value)

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when every tested parameter has a value in ``values`` that passes."""
        return all(name in values and _passes(values[name], op, bound)
                   for name, op, bound in self.tests)

    def to_toml(self) -> dict[str, Any]:
        """The ``when`` table as the sweep file writes it."""
        table: dict[str, Any] = {}
        for name, op, bound in self.tests:
            if op == "eq":
                table[name] = bound
            else:
                table.setdefault(name, {})[op] = list(bound) if op == "in" else bound
        return table


def _passes(value: Any, op: str, bound: Any) -> bool:
    if op == "eq":
        return _same(value, bound)
    if op == "in":
        return any(_same(value, b) for b in bound)
    if not _is_number(value):
        return False
    return value >= bound if op == "min" else value <= bound


def _same(a: Any, b: Any) -> bool:
    """Equal and of one kind: a boolean equals only a boolean (``True == 1`` in Python)."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


@dataclass(frozen=True)
class Categorical:
    """A list of choices (``width = [8, 16]``): an axis of a grid. With a condition it is
    written ``{ choices = [8, 16], when = {...} }``."""

    choices: tuple[Scalar, ...]
    when: Condition | None = None

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
        if self.when is not None:
            return {"choices": list(self.choices), "when": self.when.to_toml()}
        return list(self.choices)


@dataclass(frozen=True)
class Range:
    """``{low, high, step?, log?}``: an int range when low, high and step are integers, else a
    float range."""

    low: int | float
    high: int | float
    step: int | float | None = None
    log: bool = False
    when: Condition | None = None

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
        return True, value if self.is_int else float(value)  # as Optuna suggests it

    def to_toml(self) -> Any:
        """The spec as the sweep file writes it."""
        spec = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            spec["step"] = self.step
        if self.when is not None:
            spec["when"] = self.when.to_toml()
        return spec


Param = Categorical | Range


def parse_param(path: str, spec: Any, earlier: Mapping[str, Param] | None = None) -> Param:
    """Turn one ``[search.space]`` entry into a :data:`Param`, or raise :class:`SweepError`;
    ``earlier`` are the parameters declared before it (what a ``when`` may test)."""
    if isinstance(spec, dict) and "when" in spec:
        rest = {k: v for k, v in spec.items() if k != "when"}
        if set(rest) == {"choices"}:
            rest = rest["choices"]
        elif "choices" in rest:
            raise SweepError(f"{path}: choices and {sorted(set(rest) - {'choices'})[0]} cannot "
                             "be combined; a parameter is {choices, when} or {low, high, ..., "
                             "when}")
        param = parse_param(path, rest)
        return dataclasses.replace(
            param, when=_parse_condition(f"{path}.when", spec["when"], earlier or {}))
    if isinstance(spec, dict) and set(spec) == {"choices"}:
        return parse_param(path, spec["choices"])
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


def _parse_condition(path: str, spec: Any, earlier: Mapping[str, Param]) -> Condition:
    """A ``when`` table: tests on parameters declared before, each able to hold."""
    if not isinstance(spec, dict) or not spec:
        raise SweepError(f"{path} = {spec!r}: expected a table of earlier parameters, e.g. "
                         "{ layers = { min = 2 } }")
    tests = []
    for name, test in spec.items():
        where = f"{path}.{key_path(name)}"
        if name not in earlier:
            raise SweepError(f"{where}: not a parameter declared before this one; expected one "
                             "of " + (", ".join(earlier) or "none (declare it first)"))
        if isinstance(test, dict):
            unknown = set(test) - {"min", "max", "in"}
            if unknown or not test:
                raise SweepError(f"{where} = {test!r}: expected a value, or a table of min, "
                                 "max, in")
            for op, bound in test.items():
                if op == "in" and not (isinstance(bound, list) and bound):
                    raise SweepError(f"{where}.in = {bound!r}: expected a non-empty list")
                if op in ("min", "max") and not _is_number(bound):
                    raise SweepError(f"{where}.{op} = {bound!r}: expected a number")
                tests.append((name, op, tuple(bound) if op == "in" else bound))
        elif isinstance(test, str | int | float | bool):
            tests.append((name, "eq", test))
        else:
            raise SweepError(f"{where} = {test!r}: expected a value, or a table of min, max, in")
    condition = Condition(tuple(tests))
    witness = _witness(condition, earlier)
    if witness is None:
        raise SweepError(f"{path} = {spec!r}: never holds for the values "
                         + ", ".join(f"{n} can take" for n in dict.fromkeys(t[0] for t in tests)))
    return condition


def _witness(condition: Condition, params: Mapping[str, Param]) -> dict[str, Any] | None:
    """Values of the tested parameters (and of those their own conditions test) under which
    ``condition`` holds, each tested parameter's own condition holding too: from each one's
    choices, ends and, for a range, the bounds the tests name. None when there are none."""
    found: dict[str, Any] = {}
    for name in dict.fromkeys(t[0] for t in condition.tests):
        param = params[name]
        candidates = list(param.values())
        if isinstance(param, Range):
            bounds = [b for n, op, b in condition.tests if n == name and op in ("min", "max")]
            bounds += [v for n, op, b in condition.tests if n == name and op in ("eq", "in")
                       for v in (b if op == "in" else (b,))]
            candidates += [b for b in bounds if param.choose(b)[0]]
        mine = Condition(tuple(t for t in condition.tests if t[0] == name))
        for candidate in candidates:
            if not mine.holds({name: candidate}):
                continue
            chosen = {name: candidate}
            if param.when is not None:  # a conditional parameter exists only where its holds
                upstream = _witness(param.when, params)
                if upstream is None:
                    continue
                chosen.update(upstream)
            if all(found.get(k, v) == v for k, v in chosen.items()):
                found.update(chosen)
                break
        else:
            return None
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SearchSpace(Mapping[str, Param]):
    """The parameters a sweep samples, by name."""

    def __init__(self, params: Mapping[str, Param]) -> None:
        self._params = dict(params)

    @classmethod
    def parse(cls, raw: Mapping[str, Any], path: str = "search.space") -> SearchSpace:
        """The space of a ``[search.space]`` table (SweepError naming ``path.<name>``)."""
        params: dict[str, Param] = {}
        for name, spec in raw.items():  # in order: a condition tests parameters before it
            params[name] = parse_param(f"{path}.{key_path(name)}", spec, params)
        return cls(params)

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

    @property
    def conditional(self) -> list[str]:
        """The parameters with a ``when`` (suggested only when it holds)."""
        return [name for name, p in self._params.items() if p.when is not None]

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
            base = first
            if param.when is not None:  # the tested parameters at values where it holds
                base = {**first, **_witness(param.when, self._params)}
                points.append(base)
            points += [{**base, name: v} for v in param.values()[1:]]
        return [self._applicable(point) for point in points]

    def _applicable(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """``point`` without the parameters whose condition does not hold there (in order)."""
        kept: dict[str, Any] = {}
        for name, param in self._params.items():
            if param.when is None or param.when.holds(kept):
                kept[name] = point[name]
        return kept

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
        for name, value in point.items():
            when = self._params[name].when
            if when is None:
                continue
            tested = list(dict.fromkeys(t[0] for t in when.tests))
            missing = [t for t in tested if t not in point]
            if missing:
                them = "it" if len(missing) == 1 else "them"
                raise SweepError(f"{path}.{key_path(name)} = {value!r}: its condition tests "
                                 f"{', '.join(missing)}; give {them} too")
            if not when.holds(point):
                raise SweepError(f"{path}.{key_path(name)} = {value!r}: its condition "
                                 f"{when.to_toml()} does not hold for "
                                 + ", ".join(f"{t} = {point[t]!r}" for t in tested))
        return point

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Ask ``trial`` for one value of every parameter whose condition holds on the values
        suggested before it (in the order of the space)."""
        values: dict[str, Any] = {}
        for name, param in self._params.items():
            if param.when is None or param.when.holds(values):
                values[name] = param.suggest(trial, name)
        return values

    def to_toml(self) -> dict[str, Any]:
        """The ``[search.space]`` table as the sweep file writes it."""
        return {name: p.to_toml() for name, p in self._params.items()}


class FunctionSpace(SearchSpace):
    """``[search] space = "package.module:function"``: a function ``(trial: optuna.Trial) ->
    dict`` that suggests the parameters itself, as an Optuna define-by-run objective does, so
    any condition can be written. It names no parameter beforehand (an empty mapping); the
    builder check builds the configurations it gives :data:`SAMPLED` trials of a seeded random
    sampler.

    Example:
        >>> def space(trial):
        ...     layers = trial.suggest_int("layers", 1, 3)
        ...     widths = {f"width_{i}": trial.suggest_categorical(f"width_{i}", [8, 32])
        ...               for i in range(1, layers + 1)}
        ...     return {"layers": layers, **widths}
        >>> points = FunctionSpace("doc:space", space).edge_points()
        >>> all(len(p) == p["layers"] + 1 for p in points)
        True
    """

    SAMPLED = 8

    def __init__(self, path: str, function) -> None:
        super().__init__({})
        self.path, self.function = path, function
        self._edge_points: list[dict[str, Any]] | None = None

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """The function's configuration for ``trial``, checked to be a table of values."""
        values = self.function(trial)
        if not isinstance(values, dict) or not all(
                isinstance(k, str) and isinstance(v, str | int | float | bool)
                for k, v in values.items()):
            raise SweepError(f"search.space = {self.path!r}: it returned {values!r}; expected "
                             "a dict of parameter name → string, number or boolean")
        return values

    def edge_points(self) -> list[dict[str, Any]]:
        """The configurations of :data:`SAMPLED` trials of an in-memory study, random sampler
        seeded 0 (the function's own errors raised as :class:`SweepError`); computed once, as
        validation and the builder check both ask (the sampler is seeded: the same points)."""
        if self._edge_points is None:
            self._edge_points = self._sample_points()
        return list(self._edge_points)

    def _sample_points(self) -> list[dict[str, Any]]:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
        try:
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        finally:
            optuna.logging.set_verbosity(verbosity)
        points = []
        for _ in range(self.SAMPLED):
            trial = study.ask()
            try:
                points.append(self.suggest(trial))
            except SweepError:
                raise
            except Exception as exc:  # the user's function may raise anything
                reason = " ".join(f"{type(exc).__name__}: {exc}".split())
                raise SweepError(f"search.space = {self.path!r}: it raised {reason}; fix the "
                                 "function") from exc
            study.tell(trial, 0.0)
        return points

    def point(self, values: Any, path: str) -> dict[str, Any]:
        """``values`` as given (the function decides which parameters exist): a non-empty
        table of names to strings, numbers or booleans."""
        if not isinstance(values, dict) or not values or not all(
                isinstance(v, str | int | float | bool) for v in values.values()):
            raise SweepError(f"{path} = {values!r}: expected a table of parameter = value")
        return dict(values)

    def to_toml(self) -> str:
        """The ``[search] space`` string."""
        return self.path

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FunctionSpace) and other.path == self.path

    __hash__ = None
