"""Conditional spaces end to end: a TOML ``when`` on a real sweep, and a define-by-run function
called on the study's own trials (its configurations, and the builder check on them, are in
tests/test_space.py and the bad-input catalogue)."""

from __future__ import annotations

import textwrap

from hpo import Results, load_sweep, run_sweep

from conftest import SMALL_SWEEP

TINY = ["protocol.repeats=1", "train.epochs=1", "search.sampler='random'", "search.n_trials=5"]
SPACE = textwrap.dedent("""
    def space(trial):
        # Q7b's two widths, the second only with two layers (as KerasTuner's hp inside an if).
        layers = trial.suggest_int("layers", 1, 2)
        params = {"layers": layers, "width_1": trial.suggest_categorical("width_1", [4, 8])}
        if layers == 2:
            params["width_2"] = trial.suggest_categorical("width_2", [4, 8])
        return params
""")


def test_a_when_parameter_is_left_out_where_its_condition_fails(tmp_path, mnist_data):
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SWEEP)
    # One enqueued configuration per branch, then a sampled one (3 architectures to compile).
    sweep = load_sweep(path, [*TINY, "search.n_trials=3",
                              "search.space={layers={low=1, high=2}, width_1=[4, 8], "
                              "width_2={choices=[4, 8], when={layers={min=2}}}}",
                              "search.enqueue=[{layers=1, width_1=4}, "
                              "{layers=2, width_1=8, width_2=4}]"])
    url = f"sqlite:///{tmp_path / 'when.db'}"
    run_sweep(sweep, storage=url)
    with Results(url) as r:
        trials = r.trials("small")
    assert (trials["state"] == "COMPLETE").all() and len(trials) == 3
    assert (trials["width_2"].isna() == (trials["layers"] < 2)).all()
    assert set(trials["layers"]) == {1, 2}  # both branches ran


def test_a_space_function_that_raises_on_a_trial_fails_that_trial_only(tmp_path, mnist_data,
                                                                       monkeypatch):
    # It passes the checks (trials of an in-memory study), then raises on the study's own
    # trials: each is told FAIL with the reason; nothing is left RUNNING for a rerun to retry.
    (tmp_path / "flaky_spaces.py").write_text(SPACE + textwrap.dedent("""
        def flaky(trial):
            if trial.study.study_name == "small":
                raise ValueError("no width for this branch")
            return space(trial)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SWEEP)
    sweep = load_sweep(path, [*TINY, "search.n_trials=2", "search.space='flaky_spaces:flaky'"])
    url = f"sqlite:///{tmp_path / 'flaky.db'}"
    study = run_sweep(sweep, storage=url)
    assert study.user_attrs["hpo.sweep"]["search.space"] == "flaky_spaces:flaky"
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]
    assert study.trials[0].user_attrs["error"] == "ValueError: no width for this branch"
    assert run_sweep(sweep, storage=url).trials == study.trials  # nothing to resume or retry
