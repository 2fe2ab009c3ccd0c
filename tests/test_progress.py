"""The progress display: seeds trained together, and an ETA that leaves the start-up out."""

from __future__ import annotations

import io

import pytest

from hpo import progress
from hpo.sweep import parse_sweep

SWEEP = """
[study]
name = "p"
direction = "maximize"
[data]
dataset = "mnist"
[model]
builder = "mlp"
[train]
epochs = 3
[protocol]
repeats = 3
"""


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_pack_of_seeds_shows_as_a_range_and_each_run_end_counts_the_seeds_done(clock):
    shown = io.StringIO()
    lines = progress.LineProgress(shown, every_s=0)
    lines.sweep_started(parse_sweep(SWEEP), remaining=1, finished=0)
    lines.trial_started(0, {"width": 4}, epochs=3)
    for seed in range(3):
        lines.run_started(seed)
    assert "seeds 1-3/3 epoch 0/3" in lines.position()
    for epoch in (1, 2, 3):
        for seed in range(3):
            lines.run_epoch(seed, epoch, {"val_accuracy": 0.5})
    for seed in range(3):
        lines.run_finished(seed, None)
    ends = [line for line in shown.getvalue().splitlines() if " done (" in line]
    assert [line.split(" done ")[1].split(":")[0] for line in ends] == [
        "(1/3 seeds)", "(2/3 seeds)", "(3/3 seeds)"]
    assert lines.position().startswith("trial 1/1 (#0) seed 3/3")


def test_the_eta_is_paced_by_the_epochs_after_the_first(clock):
    shown = progress.Progress()
    shown.sweep_started(parse_sweep(SWEEP), remaining=2, finished=0)  # 2 × 3 seeds × 3 epochs
    shown.trial_started(0, {}, epochs=3)
    for seed in range(3):
        shown.run_started(seed)
    assert shown.eta_s is None

    def pack_epoch(epoch, seconds):  # the pack's three replicas report one after the other
        clock[0] += seconds
        for seed in range(3):
            shown.run_epoch(seed, epoch, {})
            clock[0] += 0.001

    pack_epoch(1, 60.0)  # data, tracing, compiling and the first epoch
    assert shown.eta_s is None  # its time is mostly start-up: no pace to tell
    pack_epoch(2, 3.0)  # a compiled epoch: 1 s per run-epoch
    assert shown.eta_s is None  # one run-epoch reported is not the pace: the burst has not ended
    pack_epoch(3, 3.0)
    # Paced by epoch 2's burst (3 run-epochs in 3 s), not by the first report of epoch 3.
    assert shown.eta_s == pytest.approx(1.0 * 9, rel=0.01)
