"""The reference protocols that travel with hpo: the sweep files of the repository's ``sweeps/``.

There is one copy of them, that folder: pyproject.toml installs it as the package
``hpo.sweeps`` (``package-dir``), so a wheel carries the files as ``hpo/sweeps/*.toml`` and an
editable install reads the folder itself. They are found with :mod:`importlib.resources`, never
by a path relative to this module. A file's first line is a ``#`` comment summing it up in one
line; ``hpo sweeps`` lists those.

A sweep argument of ``hpo run``, ``hpo worker`` and ``hpo check`` is a file when one exists
there (:func:`locate`), else the name of a shipped protocol.

Example:
    >>> "mnist-q6-width" in names()
    True
    >>> locate("mnist-q6-width.toml").name
    'mnist-q6-width.toml'
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import NamedTuple

from hpo.errors import HpoError, SweepError

PACKAGE = "hpo.sweeps"
SUFFIX = ".toml"


class Protocol(NamedTuple):
    """A shipped sweep file: its name (the file name without ``.toml``) and its summary."""

    name: str
    summary: str


def protocols() -> list[Protocol]:
    """Every shipped protocol, by name, with its summary (the first line's comment, else "")."""
    return [Protocol(name, _summary(_resource(name).read_text(encoding="utf-8")))
            for name in names()]


def names() -> list[str]:
    """The names of the shipped protocols, numbers in them in numeric order (q8, q9, q10a)."""
    return sorted((entry.name.removesuffix(SUFFIX) for entry in files(PACKAGE).iterdir()
                   if entry.name.endswith(SUFFIX) and entry.is_file()), key=_natural)


def locate(value: str | Path) -> Path:
    """The sweep file that a command-line argument ``value`` names.

    A file that exists wins: ``value`` itself, or for a bare name ``value.toml`` in the working
    directory (so a copy made by :func:`copy` is the one that runs). Else a bare name (no
    folder in it), with or without ``.toml``, of a shipped protocol. A path with a folder in it
    is returned as it is (:func:`~hpo.sweep.load_sweep` says why it cannot be read); any other
    value raises :class:`SweepError` listing the shipped names.
    """
    path = Path(value)
    if path.exists() or path.name != str(value):  # a file, or a path with a folder in it
        return path
    local = path.with_name(path.name + SUFFIX)
    if path.suffix != SUFFIX and local.is_file():
        return local
    name = path.name.removesuffix(SUFFIX)
    if name not in names():
        raise SweepError(f"{value}: no such file, and no shipped protocol of that name; "
                         f"expected a sweep file or one of {', '.join(names())} "
                         "(hpo sweeps describes them)")
    resource = _resource(name)
    if not isinstance(resource, Path):  # only when hpo itself is imported from a zip file
        raise SweepError(f"{value}: the shipped protocols are not files here ({resource}); "
                         f"copy it out first: hpo sweeps --copy {name}")
    return resource


def copy(value: str, folder: Path = Path(".")) -> Path:
    """Write the shipped protocol named ``value`` (``.toml`` optional) to ``folder/NAME.toml``,
    byte for byte, to be edited; never over an existing file (:class:`HpoError`)."""
    name = value.removesuffix(SUFFIX)
    if name not in names():
        raise SweepError(f"--copy {value}: no shipped protocol of that name; expected one of "
                         f"{', '.join(names())}")
    target = folder / f"{name}{SUFFIX}"
    try:
        with target.open("xb") as out:  # "x": fails if the file exists, even one made just now
            out.write(_resource(name).read_bytes())
    except FileExistsError:
        raise HpoError(f"--copy {value}: {target} exists; not overwritten (remove or rename "
                       "it first)") from None
    except OSError as exc:
        raise HpoError(f"--copy {value}: cannot write {target} ({exc.strerror})") from exc
    return target


def _resource(name: str) -> Traversable:
    return files(PACKAGE).joinpath(f"{name}{SUFFIX}")


def _natural(name: str) -> list[str | int]:
    """Sort key reading each run of digits as a number.

    Example:
        >>> sorted(["q10a", "q9", "q8"], key=_natural)
        ['q8', 'q9', 'q10a']
    """
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _summary(text: str) -> str:
    """The comment on the first line of a sweep file, or "" when it has none.

    Example:
        >>> _summary("# MNIST: width 2..256\\n#\\n[study]\\n"), _summary("[study]\\n")
        ('MNIST: width 2..256', '')
    """
    first = text.partition("\n")[0]
    return first.lstrip("#").strip() if first.startswith("#") else ""
