"""Enqueued configurations ([search] enqueue, hpo enqueue): tried first, once, on a real sweep."""

from __future__ import annotations

import sqlite3

import optuna
import pytest

import hpo
from hpo import load_sweep, run_sweep
from hpo.cli import main
from hpo.runner import prepare_study

from conftest import SMALL_SWEEP

SETTINGS = ["protocol.repeats=1", "train.epochs=1", "search.sampler='random'",
            "search.n_trials=3", "search.space.width={low=2, high=32}",
            "search.enqueue=[{width=5}, {width=7}]"]


def params(url: str) -> list[tuple[str, dict]]:
    study = optuna.load_study(study_name="small", storage=url)
    # A WAITING trial holds its enqueued values as Optuna's fixed params until it is asked.
    return [(t.state.name, t.params or t.system_attrs.get("fixed_params", {}))
            for t in study.get_trials(deepcopy=False)]


@pytest.fixture
def sweep(tmp_path, mnist_data):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SWEEP)
    return load_sweep(path, SETTINGS)


def test_enqueued_configurations_come_first_once_and_hpo_enqueue_adds_one(sweep, tmp_path,
                                                                           capsys):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    run_sweep(sweep, storage=url)
    trials = params(url)
    assert [p for _, p in trials[:2]] == [{"width": 5}, {"width": 7}]  # first, in order
    assert [state for state, _ in trials] == ["COMPLETE"] * 3
    prepare_study(sweep, url)  # opening the study again enqueues nothing: both already ran
    assert params(url) == trials

    assert main(["enqueue", "small", "--set", "width=9", "--storage", url]) == 0
    assert "enqueued width=9" in capsys.readouterr().out
    assert params(url)[3] == ("WAITING", {"width": 9})
    assert main(["enqueue", "small", "--set", "width=5", "--storage", url]) == 0
    assert "already a trial" in capsys.readouterr().out and len(params(url)) == 4

    db = tmp_path / "study.db"
    with sqlite3.connect(db) as conn:
        before = "\n".join(conn.iterdump())
    for bad, expected in ((["width=64"], "--set.width = 64: expected an integer from 2 to 32"),
                          (["depth=2"], "--set.depth: not a parameter"),
                          (["width"], "--set 'width': expected PARAM=VALUE")):
        code = main(["enqueue", "small", *[a for b in bad for a in ("--set", b)],
                     "--storage", url])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err
    with sqlite3.connect(db) as conn:
        assert "\n".join(conn.iterdump()) == before  # nothing written

    for study_args, expected in (
            (["nothing", "--storage", url], "study 'nothing': not in"),
            (["small", "--storage", f"sqlite:///{tmp_path / 'grid.db'}"],
             "study 'small': its grid sampler visits every configuration")):
        if "grid" in study_args[-1]:
            prepare_study(load_sweep(tmp_path / "small.toml"), study_args[-1])
        code = main(["enqueue", *study_args[:1], "--set", "width=9", *study_args[1:]])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expected in err[0], err

    run_sweep(sweep, storage=url, n_trials=4)  # room for one more: the enqueued one
    assert params(url)[3] == ("COMPLETE", {"width": 9}) and len(params(url)) == 4
    # The same from Python.
    assert hpo.enqueue_trial(url, "small", {"width": 11})
    assert not hpo.enqueue_trial(url, "small", {"width": 9})
    assert params(url)[4:] == [("WAITING", {"width": 11})]
