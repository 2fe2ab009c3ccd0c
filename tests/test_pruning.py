"""Pruning on the mean curve: a pruned trial stops every seed and keeps the epochs it ran."""

from __future__ import annotations

import optuna
import pytest

from hpo import Results, parse_sweep, run_sweep

from conftest import SMALL_SWEEP

# Grid order (seeded): widths 32, 64, 8 finish first; width 2 is then below their median.
PRUNED_SWEEP = ["search.space.width=[2, 8, 32, 64]", "train.epochs=4", "search.pruner='median'",
                "protocol.repeats=2", "data.limit_train=200"]


@pytest.mark.parametrize(("pack", "backend"), [(False, "sqlite"), (True, "postgresql")])
def test_a_pruned_trial_stops_all_its_seeds_and_keeps_its_epochs(pack, backend, sqlite_url,
                                                                 request, mnist_data):
    url = sqlite_url if backend == "sqlite" else request.getfixturevalue("postgres_url")
    sweep = parse_sweep(SMALL_SWEEP, [*PRUNED_SWEEP, f"protocol.pack={str(pack).lower()}"])
    study = run_sweep(sweep, storage=url)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert [t.params["width"] for t in pruned] == [2]
    trial = pruned[0]
    stopped_at = trial.user_attrs["pruned_at_epoch"]
    assert 3 <= stopped_at < 4  # the median pruner judges from epoch 3 on
    with Results(url) as r:
        runs = r.runs("small", where={"width": 2})
        epochs = r.epochs("small", where={"width": 2})
    # Packed: every seed stopped at that epoch. One at a time: the first seed's curve decided
    # and the other seed never started.
    assert list(runs["seed"]) == ([0, 1] if pack else [0])
    assert (runs["state"] == "PRUNED").all() and (runs["epochs"] == stopped_at).all()
    val = epochs[epochs["metric"] == "val_accuracy"].groupby("epoch")["value"].mean()
    assert trial.intermediate_values == pytest.approx(val.to_dict())
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(t.params["width"] for t in complete) == [8, 32, 64]
    # A completed trial's intermediate values are its mean curve over all its seeds, also when
    # seeds trained one at a time and the pruner saw only the first seed's curve.
    with Results(url) as r:
        epochs = r.epochs("small")
    for t in complete:
        mine = epochs[(epochs["trial"] == t.number) & (epochs["metric"] == "val_accuracy")]
        assert mine["seed"].nunique() == 2
        assert t.intermediate_values == pytest.approx(
            mine.groupby("epoch")["value"].mean().to_dict(), abs=1e-12)
