"""The hpo command, run as a user runs it: a real process on a real sweep file."""

from __future__ import annotations

import subprocess
import sys

import pytest


def hpo(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "hpo", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def test_run_then_show_studies_and_check(tmp_path, sweep_file):
    result = hpo("run", str(sweep_file), "--set", "protocol.repeats=2", "--set", "train.epochs=1",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # Plain progress lines (stdout is a pipe), then the results table.
    assert "trial 1/2" in out and "seed 2/2" in out and "epoch 1/1" in out and "ETA" in out
    assert "study small" in out and "★" in out and "95 % CI" in out
    assert (tmp_path / "studies" / "small.db").exists()  # the default storage

    shown = hpo("show", "small", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "COMPLETE" in shown.stdout and "width" in shown.stdout and "±" in shown.stdout

    listed = hpo("studies", cwd=tmp_path)
    assert listed.returncode == 0 and "small" in listed.stdout and "maximize" in listed.stdout

    checked = hpo("check", str(sweep_file), cwd=tmp_path)
    assert checked.returncode == 0
    assert "2 trials × 3 repeats × 2 epochs = 6 runs, 12 epochs" in checked.stdout


def test_show_an_unknown_study_exits_2(tmp_path):
    result = hpo("show", "nothing", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("hpo: error: storage 'sqlite:///studies/nothing.db'")
    assert not (tmp_path / "studies").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["check"], ["studies"], ["show"]])
def test_help_everywhere(tmp_path, command):
    result = hpo(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0 and "usage: hpo" in result.stdout


def test_compare_plot_and_export_commands(small_study, tmp_path):
    _, url = small_study
    compared = hpo("compare", "small", "0", "1", "--storage", url, cwd=tmp_path)
    assert compared.returncode == 0, compared.stderr
    assert "Welch's t" in compared.stdout and "paired by seed (n = 3)" in compared.stdout
    plotted = hpo("plot", "small", "--kind", "param", "--storage", url, cwd=tmp_path)
    assert plotted.returncode == 0, plotted.stderr
    assert (tmp_path / "studies" / "small" / "param.png").stat().st_size > 10_000
    out = tmp_path / "runs.csv"
    exported = hpo("export", "small", "--what", "runs", "--format", "csv", "--out", str(out),
                   "--storage", url, cwd=tmp_path)
    assert exported.returncode == 0 and "wrote 6 rows of runs" in exported.stdout
    shown = hpo("show", "small", "--storage", url, cwd=tmp_path)
    assert "not distinguishable from the best" in shown.stdout
    bad = hpo("plot", "small", "--kind", "param", "--param", "depth", "--storage", url,
              cwd=tmp_path)
    assert bad.returncode == 2 and "--param 'depth': not a parameter" in bad.stderr
