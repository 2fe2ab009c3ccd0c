"""Sweep files: the only module that knows the TOML format.

:func:`load_sweep` reads a file, applies ``--set section.key=value`` overrides and validates
everything before anything is created, raising :class:`~hpo.errors.SweepError` with one line that
names the key path, the value and what is allowed.

Example:
    >>> sweep = parse_sweep('''
    ... [study]
    ... name = "demo"
    ... direction = "maximize"
    ... [data]
    ... dataset = "mnist"
    ... [model]
    ... builder = "mlp"
    ... [search.space]
    ... width = [8, 16]
    ... ''', overrides=["protocol.repeats=3"])
    >>> sweep.protocol.seeds, sweep.n_trials, sweep.storage_url
    ((0, 1, 2), 2, 'sqlite:///studies/demo.db')
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hpo.config import (
    KEEP_MODELS,
    LOSSES,
    METRICS,
    ONE_HOT_METRICS,
    OPTIMIZERS,
    PRUNERS,
    RUN_MEASURES,
    SAMPLER_PACKAGES,
    SAMPLERS,
    SPARSE_METRICS,
    TRAIN_KEYS,
    DataSpec,
    ModelSpec,
    ObjectiveSpec,
    ProtocolSpec,
    SearchSpec,
    StudySpec,
    Sweep,
    TrainSpec,
    uses_sparse_targets,
)
from hpo.datasets import loaders
from hpo.errors import SweepError, key_path
from hpo.models import INTEGERS, builders, integer_keywords
from hpo.registry import import_callable, is_function_path
from hpo.space import Categorical, FunctionSpace, Range, SearchSpace

# ---------------------------------------------------------------------------------------------
# Reading and overriding


def load_sweep(path: str | Path, overrides: Iterable[str] = ()) -> Sweep:
    """Read, override and validate the sweep file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SweepError(f"{path}: cannot read the sweep file ({exc.strerror})") from exc
    try:
        text = data.decode("utf-8")  # TOML is UTF-8, whatever the locale says
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SweepError(
            f"{path}: byte {data[exc.start:exc.start + 1]!r} on line {line} is not UTF-8; "
            "expected a TOML file in UTF-8 (save it as UTF-8)"
        ) from exc
    return parse_sweep(text, overrides, source=str(path))


def parse_sweep(text: str, overrides: Iterable[str] = (), source: str = "<sweep>") -> Sweep:
    """Validate sweep-file ``text`` with ``overrides`` applied (see :func:`load_sweep`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{source}: not valid TOML ({exc})") from exc
    for override in overrides:
        apply_override(raw, override)
    return _validate(raw, source)


def toml_value(text: str) -> Any:
    """A command-line value read as TOML (``5``, ``1e-3``, ``[8, 16]``, ``true``); a bare word
    that is not TOML (``adam``) is that string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply one ``section.key=value`` to the raw TOML dict (``value`` is read as TOML)."""
    key, sep, text = override.partition("=")
    parts = key.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise SweepError(f"--set {override!r}: expected section.key=value, e.g. train.epochs=5")
    value = toml_value(text)
    table = raw
    for i, part in enumerate(parts[:-1]):
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            raise SweepError(
                f"--set {override!r}: {key_path(*parts[: i + 1])} is a value, not a section"
            )
    table[parts[-1]] = value


# ---------------------------------------------------------------------------------------------
# Validation: each checker takes (key path, value) and returns the value or raises SweepError.

_REQUIRED = object()
Checker = Callable[[str, Any], Any]


def _fail(path: str, value: Any, allowed: str) -> SweepError:
    return SweepError(f"{path} = {value!r}: expected {allowed}")


def _string(path: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, value, "a non-empty string")
    return value


def _one_of(*allowed: str) -> Checker:
    def check(path: str, value: Any) -> str:
        if value not in allowed:
            raise _fail(path, value, "one of " + ", ".join(allowed))
        return value

    return check


def _integer(minimum: int) -> Checker:
    def check(path: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise _fail(path, value, f"an integer >= {minimum}")
        return value

    return check


def _positive_number(path: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise _fail(path, value, "a number > 0")
    return float(value)


def _optimizer(path: str, value: Any) -> str:
    return _one_of(*OPTIMIZERS)(path, value)


def _loss(path: str, value: Any) -> str:
    return _one_of(*sorted(LOSSES))(path, value)


def _metrics(path: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(m, str) for m in value):
        raise _fail(path, value, "a list of metric names")
    for metric in value:
        if metric not in METRICS:
            raise SweepError(
                f"{path} = {value!r}: unknown metric {metric!r}; expected any of "
                + ", ".join(sorted(METRICS))
            )
    return tuple(value)


def _boolean(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(path, value, "true or false")
    return value


_EARLY_STOPPING = {"monitor": _string, "patience": _integer(0), "min_delta": None,
                   "restore_best_weights": _boolean}


def _early_stopping(path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(path, value, "a table {monitor, patience, restore_best_weights, min_delta}")
    for key, item in value.items():
        if key not in _EARLY_STOPPING:
            raise SweepError(f"{path}.{key_path(key)}: unknown key; expected one of "
                             + ", ".join(_EARLY_STOPPING))
        if key == "min_delta":
            if isinstance(item, bool) or not isinstance(item, int | float) or not (
                math.isfinite(item) and item >= 0
            ):
                raise _fail(f"{path}.{key}", item, "a number >= 0")
        else:
            _EARLY_STOPPING[key](f"{path}.{key}", item)
    return {"monitor": "val_loss", "patience": 0, "restore_best_weights": False, **value}


def _pack(path: str, value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    return _integer(1)(path, value)


def _validation(path: str, value: Any) -> str | float:
    if value == "test":
        return value
    if isinstance(value, float) and 0.0 < value < 1.0:
        return value
    raise _fail(path, value, '"test" or a fraction of the training set between 0 and 1')


def _storage(path: str, value: Any) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    _string(path, value)
    try:
        make_url(value)
    except (ArgumentError, ValueError) as exc:  # ValueError: a port that is not a number
        raise _fail(path, value, "an SQLAlchemy URL such as sqlite:///studies/x.db") from exc
    return value


_OBJECTIVE_KEYS = {"metric": _string, "direction": _one_of("maximize", "minimize"),
                   "reduce": _one_of("last", "best")}


def _objectives(path: str, value: Any) -> tuple[dict[str, str], ...]:
    """``[study] objectives``: tables of metric, direction and (optional) reduce."""
    if not isinstance(value, list) or not value:
        raise _fail(path, value, 'a list of tables such as [{ metric = "val_accuracy", '
                    'direction = "maximize" }, { metric = "params", direction = "minimize" }]')
    entries = []
    for i, entry in enumerate(value):
        where = f"{path}[{i}]"
        if not isinstance(entry, dict):
            raise _fail(where, entry, "a table { metric, direction, reduce }")
        for key in entry:
            if key not in _OBJECTIVE_KEYS:
                raise SweepError(f"{where}.{key_path(key)}: unknown key; expected one of "
                                 + ", ".join(_OBJECTIVE_KEYS))
        for key in ("metric", "direction"):
            if key not in entry:
                raise SweepError(f"{where}.{key}: missing; each objective names its {key}")
        entries.append({key: check(f"{where}.{key}", entry[key])
                        for key, check in _OBJECTIVE_KEYS.items() if key in entry})
    metrics = [e["metric"] for e in entries]
    for i, metric in enumerate(metrics):
        if metric in metrics[:i]:
            raise _fail(f"{path}[{i}].metric", metric, "a metric not named by an objective before")
    return tuple(entries)


def _study(values: dict[str, Any], table: Mapping[str, Any]) -> StudySpec:
    """The study's spec: one objective (objective, direction, reduce), or ``objectives``."""
    entries = values.pop("objectives")
    if entries is None:
        if values["direction"] is None:
            raise SweepError("study.direction: missing; this key is required")
        return StudySpec(**values)
    objectives = tuple(ObjectiveSpec(e["metric"], e["direction"], e.get("reduce", values["reduce"]))
                       for e in entries)
    first = objectives[0]
    # A file's single objective may stay beside --set study.objectives when it is the first.
    for key, given in (("objective", first.metric), ("direction", first.direction)):
        if key in table and table[key] != given:
            raise SweepError(f"study.{key} = {table[key]!r}: not beside study.objectives, whose "
                             f"first objective has {given!r}; drop it or make them agree")
    return StudySpec(**{**values, "objective": first.metric, "direction": first.direction,
                        "reduce": first.reduce}, objectives=objectives)


def _check_objectives(sweep: Sweep) -> None:
    """Each objective is a history key of the sweep or a run measure; pruners judge one
    history curve; samplers for several objectives take several."""
    study, search = sweep.study, sweep.search
    allowed = "a history key of this sweep: " + ", ".join(sweep.history_keys) + \
        " (or a run measure: " + ", ".join(RUN_MEASURES) + ")"
    several = len(study.objectives) > 1
    for i, objective in enumerate(study.objectives):
        path = f"study.objectives[{i}].metric" if several else "study.objective"
        if objective.metric not in (*sweep.history_keys, *RUN_MEASURES):
            raise _fail(path, objective.metric, allowed)
    if search.pruner != "none":
        if several:
            raise _fail("search.pruner", search.pruner,
                        '"none" with several study.objectives (Optuna prunes single-objective '
                        "studies only)")
        if study.objective.startswith("test_") or study.objective in RUN_MEASURES:
            raise _fail("search.pruner", search.pruner,
                        f'"none" with study.objective = {study.objective!r} (measured once, '
                        "after training, so there is no curve to prune on)")
    if several and search.sampler in _SINGLE_OBJECTIVE_SAMPLERS:
        raise _fail("search.sampler", search.sampler,
                    "a sampler for several objectives: "
                    + ", ".join(s for s in SAMPLERS if s not in _SINGLE_OBJECTIVE_SAMPLERS))


# Optuna's samplers that optimize one objective only.
_SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)


def _artifacts(path: str, value: Any) -> str:
    """A folder, or ``module:function`` (imported now; called when a run starts)."""
    _string(path, value)
    if is_function_path(value):
        import_callable(path, value)
    return value


def _registered(registry: Any) -> Checker:
    def check(path: str, value: Any) -> str:
        _string(path, value)
        registry.check(value)  # raises SweepError naming the key, the value and the choices
        return value

    return check


def _sampler(path: str, value: Any) -> str:
    _one_of(*SAMPLERS)(path, value)
    package = SAMPLER_PACKAGES.get(value)
    if package and importlib.util.find_spec(package) is None:
        raise SweepError(
            f"{path} = {value!r}: needs the package {package!r} (pip install {package})"
        )
    return value


_SECTIONS: dict[str, dict[str, tuple[Checker, Any]]] = {
    "study": {
        "name": (_string, _REQUIRED),
        "direction": (_one_of("maximize", "minimize"), None),  # required without objectives
        "objective": (_string, "val_accuracy"),
        "reduce": (_one_of("last", "best"), "last"),
        "storage": (_storage, None),
        "artifacts": (_artifacts, None),
        "objectives": (_objectives, None),
    },
    "data": {
        "dataset": (_registered(loaders), _REQUIRED),
        "validation": (_validation, "test"),
        "limit_train": (_integer(0), 0),
        "limit_test": (_integer(0), 0),
        "shuffle": (_boolean, False),
    },
    "train": {
        "epochs": (_integer(1), 10),
        "batch_size": (_integer(1), 32),
        "optimizer": (_optimizer, "adam"),
        "learning_rate": (_positive_number, 0.001),
        "loss": (_loss, "sparse_categorical_crossentropy"),
        "metrics": (_metrics, ["accuracy"]),
        "early_stopping": (_early_stopping, None),
        "evaluate_test": (_boolean, False),
        "keep_models": (_one_of(*KEEP_MODELS), "best"),
    },
    "protocol": {
        "repeats": (_integer(1), 10),
        "seed": (_integer(0), 0),
        "pack": (_pack, True),
        "pack_trials": (_pack, True),
        "min_repeats": (_integer(1), None),
    },
    "search": {
        "sampler": (_sampler, "grid"),
        "n_trials": (_integer(1), None),
        "seed": (_integer(0), None),
        "pruner": (_one_of(*PRUNERS), "none"),
    },
}
# Train keys that a search space may sample (metrics stay fixed for a study).
_SWEEPABLE_TRAIN = ("epochs", "batch_size", "optimizer", "learning_rate", "loss")


def _section(raw: dict[str, Any], name: str, extra: Iterable[str] = ()) -> dict[str, Any]:
    """Check section ``name`` of ``raw``: known keys, types, defaults; return its values."""
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise _fail(name, table, "a [section] table")
    schema = _SECTIONS[name]
    for key in table:
        if key not in schema and key not in extra:
            raise SweepError(
                f"{key_path(name, key)}: unknown key; expected one of "
                + ", ".join([*schema, *extra])
            )
    values = {}
    for key, (check, default) in schema.items():
        if key in table:
            values[key] = check(f"{name}.{key}", table[key])
        elif default is _REQUIRED:
            raise SweepError(f"{name}.{key}: missing; this key is required")
        else:
            values[key] = check(f"{name}.{key}", default) if default is not None else None
    return values


def _validate(raw: dict[str, Any], source: str) -> Sweep:
    known = {*_SECTIONS, "model"}
    for section in raw:
        if section not in known:
            raise SweepError(
                f"[{key_path(section)}]: unknown section; expected "
                + ", ".join(f"[{s}]" for s in known)
            )

    study = _study(_section(raw, "study"), raw.get("study", {}))
    data = DataSpec(**_section(raw, "data"))
    train = TrainSpec(**_section(raw, "train"))
    protocol = ProtocolSpec(**_section(raw, "protocol"))

    model_table = raw.get("model", {})
    if not isinstance(model_table, dict):
        raise _fail("model", model_table, "a [model] table")
    if "builder" not in model_table:
        raise SweepError("model.builder: missing; this key is required")
    builder = _registered(builders)("model.builder", model_table["builder"])
    model = ModelSpec(builder, {k: v for k, v in model_table.items() if k != "builder"})
    for key, value in model.params.items():
        _keyword(key_path("model", key), key)
        _builder_value(key_path("model", key), value)

    search_values = _section(raw, "search", extra=("space", "enqueue"))
    space_table = raw.get("search", {}).get("space", {})
    if isinstance(space_table, str):  # define-by-run: "package.module:function"
        space = FunctionSpace(space_table, _space_function(space_table))
        space_table = {}
    elif not isinstance(space_table, dict):
        raise _fail("search.space", space_table,
                    "a [search.space] table or 'package.module:function'")
    elif "space" in raw.get("search", {}) and not space_table:
        raise SweepError("search.space = {}: empty; name at least one parameter or drop the table")
    else:
        space = SearchSpace.parse(space_table)
    enqueue = _enqueue(raw.get("search", {}).get("enqueue", []), space,
                       search_values["sampler"])
    search = SearchSpec(space=space, enqueue=enqueue, **search_values)

    if protocol.min_repeats > protocol.repeats:
        raise _fail("protocol.min_repeats", protocol.min_repeats,
                    f"an integer from 1 to protocol.repeats = {protocol.repeats}")
    if isinstance(space, FunctionSpace):
        _check_function_space(space, model, train)
    _check_space(space, train)
    _check_integer_keywords(model, space, space_table)
    _check_search(search)
    _check_targets(train)
    sweep = Sweep(study, data, model, train, protocol, search, source)
    _check_objectives(sweep)
    monitor = (train.early_stopping or {}).get("monitor")
    epoch_keys = [k for k in sweep.history_keys if not k.startswith("test_")]
    if monitor is not None and monitor not in epoch_keys:
        raise _fail("train.early_stopping.monitor", monitor,
                    "a per-epoch history key: " + ", ".join(epoch_keys))
    return sweep


def _keyword(path: str, name: str) -> str:
    """A builder keyword (a ``[model]`` key or a searched name) is a Python identifier."""
    if not name.isidentifier():
        raise SweepError(f"{path}: expected a Python identifier, as it is passed to the "
                         "builder as a keyword argument")
    return name


def _builder_value(path: str, value: Any) -> Any:
    """A fixed builder keyword's value: TOML's strings, numbers, booleans, lists and tables,
    but not dates and times (no builder takes one; the stored sweep is JSON) nor nan (it
    differs from itself, so a study holding it could never be resumed)."""
    def ok(item: Any) -> bool:
        if isinstance(item, list):
            return all(map(ok, item))
        if isinstance(item, dict):
            return all(map(ok, item.values()))
        if isinstance(item, float):
            return not math.isnan(item)
        return isinstance(item, str | int)

    if not ok(value):
        raise _fail(path, value, "strings, numbers (not nan), booleans, or lists or tables of "
                                 "them; no dates or times")
    return value


def _check_space(space: SearchSpace, train: TrainSpec, prefix: str = "") -> None:
    for name, param in space.items():
        path = f"{prefix} {name}" if prefix else key_path("search", "space", name)
        if name in ("builder", "metrics") or (
            name in TRAIN_KEYS and name not in _SWEEPABLE_TRAIN
        ):
            raise SweepError(f"{path}: {name!r} cannot be searched; set it in its section "
                             "(searchable [train] keys: " + ", ".join(_SWEEPABLE_TRAIN) + ")")
        if name not in _SWEEPABLE_TRAIN:
            _keyword(path, name)
            continue  # a builder keyword: the builder judges its values
        check = _SECTIONS["train"][name][0]
        for value in param.values():
            check(path, value)
        if name == "loss":
            for loss in param.values():
                _check_targets(dataclasses.replace(train, loss=loss), path)


def _check_integer_keywords(model: ModelSpec, space: SearchSpace,
                            space_table: Mapping[str, Any]) -> None:
    """Integers for the builder's keywords annotated ``int`` (or ``Sequence[int]``), fixed or
    searched: ``width = 2.5`` or ``{low = 1.5, high = 4.0}`` would otherwise reach the builder
    as a float, silently truncated or refused only when a trial runs."""
    kinds = integer_keywords(builders.resolve(model.builder))
    for name, value in model.params.items():
        if name in kinds:
            _integer_keyword(key_path("model", name), value, kinds[name], model.builder, name)
    for name, param in space.items():
        if name not in kinds or name in _SWEEPABLE_TRAIN:
            continue
        path = key_path("search", "space", name)
        if isinstance(param, Range) and (kinds[name] == INTEGERS or not param.is_int):
            allowed = "an integer range (low, high and step integers)"
            if kinds[name] == INTEGERS:
                allowed = "a list of integers, which cannot be a search choice"
            raise _fail(path, space_table[name],
                        f"{allowed}, as builder {model.builder!r} annotates {name}")
        for value in param.values():
            _integer_keyword(path, value, kinds[name], model.builder, name)


def _integer_keyword(path: str, value: Any, kind: str, builder: str, name: str) -> None:
    def integer(item: Any) -> bool:
        return isinstance(item, int) and not isinstance(item, bool)

    if kind == INTEGERS:
        good = isinstance(value, list) and all(map(integer, value))
    else:
        good = integer(value)
    if not good:
        raise _fail(path, value, f"{kind}, as builder {builder!r} annotates {name}")


def _space_function(path: str):
    """The function a ``[search] space = "module:function"`` names (SweepError otherwise)."""
    if ":" not in path:
        raise _fail("search.space", path, "'package.module:function' (a function of an "
                    "optuna.Trial that returns the configuration) or a [search.space] table")
    return import_callable("search.space", path)


def _check_function_space(space: FunctionSpace, model: ModelSpec, train: TrainSpec) -> None:
    """The configurations a function space gives (:meth:`FunctionSpace.edge_points`), checked
    as a ``[search.space]`` table's values are: builder keywords are identifiers (integers
    where the builder annotates ``int``), training settings valid."""
    for point in space.edge_points():
        given = SearchSpace({name: Categorical((value,)) for name, value in point.items()})
        _check_space(given, train, prefix=f"search.space = {space.path!r} gave")
        _check_integer_keywords(model, given, {})


def _enqueue(entries: Any, space: SearchSpace, sampler: str) -> tuple[dict[str, Any], ...]:
    """``[search] enqueue``: configurations tried first, each checked against the space."""
    if not isinstance(entries, list):
        raise _fail("search.enqueue", entries,
                    "a list of tables, e.g. [{ width = 32 }, { width = 64 }]")
    if entries and sampler == "grid":
        raise _fail("search.enqueue", entries,
                    "no entries with the grid sampler (it visits every configuration in its own "
                    "order); use another sampler (random, tpe, ...)")
    return tuple(space.point(entry, f"search.enqueue[{i}]") for i, entry in enumerate(entries))


def _check_search(search: SearchSpec) -> None:
    if search.sampler == "grid":
        if isinstance(search.space, FunctionSpace):
            raise _fail("search.space", search.space.path,
                        "a [search.space] table of lists with the grid sampler (a function's "
                        "parameters are not a grid); use another sampler (random, tpe, ...)")
        if search.space.conditional:
            name = search.space.conditional[0]
            raise SweepError(
                f"search.space.{name}.when: the grid sampler cannot leave a parameter out of a "
                "configuration; use another sampler (random, tpe, ...)")
        if not search.space.is_grid:
            name = next(n for n, p in search.space.items() if not isinstance(p, Categorical))
            raise SweepError(
                f"search.space.{name} = {search.space[name].to_toml()!r}: the grid sampler needs "
                "a list of values; use a list or another sampler (random, tpe, ...)"
            )
    elif search.n_trials is None:
        raise SweepError(
            f"search.n_trials: missing; the {search.sampler!r} sampler needs a trial budget"
        )


def _check_targets(train: TrainSpec, path: str = "train.metrics") -> None:
    sparse = uses_sparse_targets(train.loss)
    clash = ONE_HOT_METRICS if sparse else SPARSE_METRICS
    for metric in train.metrics:
        if metric in clash:
            targets = "integer labels" if sparse else "one-hot targets"
            raise SweepError(
                f"{path}: metric {metric!r} does not fit loss {train.loss!r} ({targets}); "
                "use 'accuracy'"
            )
