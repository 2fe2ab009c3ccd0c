"""The reference protocols travel with the package: ``hpo sweeps``, a shipped name where a sweep
file goes, ``--copy``; and a wheel installed into a fresh environment carries them."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from importlib.resources import files
from pathlib import Path

import pytest

from hpo import shipped
from hpo.cli import main
from hpo.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "sweeps"
FILES = sorted(p.name for p in SWEEPS.glob("*.toml"))
SHIPPED_Q6 = Path(str(files(shipped.PACKAGE) / "mnist-q6-width.toml"))


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """An empty working directory outside the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), err
    return lines[0]


# --- packaging --------------------------------------------------------------------------------

def test_every_package_under_hpo_is_listed_for_the_wheel():
    # pyproject lists the packages (hpo.sweeps is mapped, not found): a new one must be added.
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in ROOT.glob("hpo/**/__init__.py")}
    assert set(listed["packages"]) == on_disk | {"hpo.sweeps"}
    assert listed["package-dir"] == {"hpo.sweeps": "sweeps"}


def test_the_shipped_protocols_are_the_files_of_sweeps_folder():
    # One copy: the editable install reads the repository's folder itself.
    assert SHIPPED_Q6 == SWEEPS / "mnist-q6-width.toml"
    assert sorted(f"{name}.toml" for name in shipped.names()) == FILES
    assert len(FILES) == 20


@pytest.mark.parametrize("name", [f.removesuffix(".toml") for f in FILES])
def test_each_shipped_protocol_has_a_summary_line_and_is_valid(name):
    text = (SWEEPS / f"{name}.toml").read_text()
    assert text.startswith("# ")
    summary = dict(shipped.protocols())[name]
    assert summary and len(summary) <= 98 and summary == text.splitlines()[0][2:]
    sweep = load_sweep(shipped.locate(name))
    assert sweep.study.name == name  # hpo run NAME makes studies/NAME.db


# --- hpo sweeps -------------------------------------------------------------------------------

def test_sweeps_lists_each_protocol_on_one_line_with_its_summary(elsewhere, capsys):
    assert main(["sweeps"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == shipped.names()
    assert len(lines) == len(FILES)
    q6 = next(line for line in lines if line.startswith("mnist-q6-width "))
    assert q6.split(None, 1)[1] == (
        "Assignment Q6, MNIST: hidden width 2..256 (784-W-10), 10 epochs, 10 seeds per width")
    # Numbers in numeric order: q8 and q9 before q10a.
    assert lines[0].startswith("cifar10-q8-mlp-width") and lines[2].startswith("cifar10-q10a")


@pytest.mark.parametrize("given", ["mnist-q6-width", "mnist-q6-width.toml"])
def test_sweeps_copy_writes_the_shipped_file_here_and_never_overwrites(elsewhere, capsys, given):
    assert main(["sweeps", "--copy", given]) == 0
    copy = elsewhere / "mnist-q6-width.toml"
    assert copy.read_bytes() == (SWEEPS / "mnist-q6-width.toml").read_bytes()
    assert "wrote mnist-q6-width.toml" in capsys.readouterr().out
    copy.write_text("# my edits\n")
    assert main(["sweeps", "--copy", given]) == 2
    line = one_error_line(capsys)
    assert "mnist-q6-width.toml exists; not overwritten" in line
    assert copy.read_text() == "# my edits\n"


def test_sweeps_copy_of_an_unknown_name_lists_the_shipped_ones(elsewhere, capsys):
    assert main(["sweeps", "--copy", "mnist-q6"]) == 2
    line = one_error_line(capsys)
    assert "--copy mnist-q6: no shipped protocol of that name" in line
    assert all(name in line for name in shipped.names())
    assert list(elsewhere.iterdir()) == []


# --- a name where a sweep file goes -----------------------------------------------------------

@pytest.mark.parametrize(("given", "local", "expected"), [
    ("mnist-q6-width", None, SHIPPED_Q6),
    ("mnist-q6-width.toml", None, SHIPPED_Q6),
    # A file that exists wins: the name itself, or a bare name's NAME.toml (hpo sweeps --copy).
    ("mnist-q6-width", "mnist-q6-width", Path("mnist-q6-width")),
    ("mnist-q6-width", "mnist-q6-width.toml", Path("mnist-q6-width.toml")),
    ("mnist-q6-width.toml", "mnist-q6-width.toml", Path("mnist-q6-width.toml")),
])
def test_check_takes_a_file_that_exists_else_the_shipped_protocol(elsewhere, capsys, given,
                                                                  local, expected):
    if local:
        text = (SWEEPS / "mnist-q6-width.toml").read_text()
        (elsewhere / local).write_text(text.replace("[2, 4, 8, 16, 32, 64, 128, 256]", "[3]"))
    assert main(["check", given]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{expected}: ok"
    assert out[-1] == ("  width: [3]" if local else "  width: [2, 4, 8, 16, 32, 64, 128, 256]")


@pytest.mark.parametrize("command", ["run", "worker", "check"])
def test_an_unknown_name_is_one_line_listing_the_shipped_ones_exit_2(elsewhere, capsys, command):
    assert main([command, "mnist-q6-widht"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("hpo: error: mnist-q6-widht: no such file, and no shipped protocol")
    assert all(name in line for name in shipped.names())
    assert list(elsewhere.iterdir()) == []  # no studies/, no database


def test_a_missing_path_with_a_folder_is_not_taken_for_a_name(elsewhere, capsys):
    assert main(["check", "sub/mnist-q6-width.toml"]) == 2
    assert one_error_line(capsys) == ("hpo: error: sub/mnist-q6-width.toml: cannot read the "
                                      "sweep file (No such file or directory)")


def test_run_and_worker_by_name_load_the_shipped_protocol(elsewhere, capsys):
    # An override the shipped file's own values make invalid: the error proves run and worker
    # read that file (its grid), and nothing is trained or written.
    for command in ("run", "worker"):
        code = main([command, "mnist-q6-width", "--set", "protocol.min_repeats=11"])
        assert code == 2
        assert one_error_line(capsys) == ("hpo: error: protocol.min_repeats = 11: expected an "
                                          "integer from 1 to protocol.repeats = 10")
    assert list(elsewhere.iterdir()) == []


# --- from a wheel, in a fresh environment -----------------------------------------------------

def test_a_wheel_installed_elsewhere_lists_checks_and_copies_the_protocols(tmp_path):
    # Build from a copy of the sources (the checkout's build/ stays untouched), offline, with
    # this environment's setuptools (>= 77: the dev extra).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    for folder in ("hpo", "sweeps"):
        shutil.copytree(ROOT / folder, source / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                 "--no-build-isolation", "-w", dist, source], tmp_path)
    assert built.returncode == 0, f"needs setuptools>=77 here (pip install -e .[dev]):\n{built}"
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    inside = sorted(n.removeprefix("hpo/sweeps/") for n in names
                    if n.startswith("hpo/sweeps/") and n.endswith(".toml"))
    assert inside == FILES
    # hpo report's templates are package data too.
    assert {f"hpo/templates/{p.name}" for p in (ROOT / "hpo" / "templates").glob("*.j2")} <= set(
        names) and any(n.endswith("report.html.j2") for n in names)

    # A fresh environment: the wheel's hpo; the other dependencies borrowed from this one
    # (a .pth line: .pth files in a folder added that way are not read, so this environment's
    # editable hpo does not come along).
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, check=True)
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                  tmp_path, check=True).stdout.strip()
    Path(purelib, "borrowed_dependencies.pth").write_text(
        "\n".join(site.getsitepackages()) + "\n")
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "-q",
                     "--no-deps", "--no-index", wheel], tmp_path)
    assert installed.returncode == 0, installed

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run([python, "-c", "import hpo, hpo.shipped as s; print(hpo.__file__); "
                 "print(s.locate('mnist-q6-width'))"], outside, check=True).stdout.split()
    shipped_q6 = Path(purelib, "hpo", "sweeps", "mnist-q6-width.toml")
    assert [Path(p) for p in where] == [Path(purelib, "hpo", "__init__.py"), shipped_q6]

    hpo = str(venv / "bin" / "hpo")
    listed = run([hpo, "sweeps"], outside, check=True).stdout.splitlines()
    assert [line.split()[0] for line in listed] == shipped.names()
    checked = run([hpo, "check", "mnist-q6-width"], outside, check=True).stdout.splitlines()
    assert checked[0] == f"{shipped_q6}: ok"
    assert "8 trials × 10 repeats × 10 epochs = 80 runs, 800 epochs; sampler grid" in checked[2]
    copied = run([hpo, "sweeps", "--copy", "mnist-q6-width"], outside, check=True)
    assert copied.stdout.startswith("wrote mnist-q6-width.toml")
    assert (outside / "mnist-q6-width.toml").read_bytes() == (
        SWEEPS / "mnist-q6-width.toml").read_bytes()
    assert sorted(p.name for p in outside.iterdir()) == ["mnist-q6-width.toml"]


def run(command, cwd, check=False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result
    return result
