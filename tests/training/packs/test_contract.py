"""The contract every pack keeps: a packed replica is its seed's solo run, and a trial packed
with other trials is that trial trained alone.

The same tests run for every pack, selected by parameter: the functional pack (on this process'
backend), TensorFlow's fast path and JAX's. The Keras backend is chosen once per process, so a
pack whose backend is not this process' is run in one subprocess per test session, which
computes every case's solo and packed runs (this module run as a script) and returns them as
JSON; the assertions then read the same data for every pack.

"Solo" is hpo's solo trainer with the pack's ``fast`` setting: on a fast path a solo run is a pack
of one (so the two draw the same dropout masks by construction); for the functional pack it is
Keras ``fit``. The fast paths are also held to Keras ``fit`` where no random numbers are drawn.

Tolerance: on one machine and backend, a replica computes the same operations on the same numbers
as its solo run (the same gathered batch, element-wise optimizer updates), so the histories agree
to float32 rounding; we assert 1e-5 relative on losses and 1e-6 on accuracies over a few epochs.
Measured: the fast paths' XLA kernels round differently from the solo runs' in the last bit now
and then (TensorFlow: a loss of 1.8681903 came out 1.8681905 after one epoch; JAX: an accuracy of
43/100 came out 0.42999998 instead of 0.43000001); the functional pack runs the solo kernels.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpo.models import builders
from hpo.runner import load_data
from hpo.sweep import parse_sweep
from hpo.training.dispatch import train_runs, train_trials
from hpo.training.job import TrainingJob
from hpo.training.packed import train_packed
from hpo.training.packs import make_pack
from hpo.training.solo import train_solo

from conftest import SMALL_SWEEP, CollectSink, require

TESTS = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Kind:
    """A pack under contract: the Keras backend it needs (None: any) and its class."""

    backend: str | None
    pack: str


PACKS = {
    "functional": Kind(None, "FunctionalPack"),
    "tf": Kind("tensorflow", "TfPack"),
    "jax": Kind("jax", "JaxPack"),
}


@dataclass(frozen=True)
class Case:
    """A small training job, trained solo and packed with the same seeds."""

    overrides: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    params: dict[str, Any] = field(default_factory=dict)
    builder: str = "mlp"

    def job(self) -> TrainingJob:
        sweep = parse_sweep(SMALL_SWEEP, list(self.overrides))
        build = poisoned if self.builder == "poisoned" else builders.resolve(self.builder)
        return TrainingJob(build, {"width": 16, **self.params}, sweep.train, load_data(sweep))


CASES = {
    "first_step": Case(("data.limit_train=32", "train.epochs=1")),  # one step of batch 32
    "plain": Case(("train.epochs=3",), params={"dropout": 0.0}),
    "dropout": Case(("train.epochs=3",), params={"dropout": 0.3}),
    # High learning rate on a small set: the seeds stop at different epochs.
    "early_stopping": Case(("train.epochs=8", "train.learning_rate=0.05",
                            "train.evaluate_test=true",
                            "train.early_stopping={monitor='val_loss', patience=1, "
                            "restore_best_weights=true}"), seeds=(0, 1, 2, 3)),
    # Seed 1's replica computes NaN (see `poisoned`); seeds 0 and 3 do not.
    "nan": Case(("train.epochs=2",), seeds=(0, 1, 3), params={"width": 8}, builder="poisoned"),
    # Trials packed together (see `cross_trial`): three architectures, one with dropout.
    "cross_trial": Case(("train.epochs=2",), seeds=(0, 1)),
}
# The trials of the cross_trial case, and the epoch after which trial 0's pruner stops it.
TRIALS = ({"width": 8}, {"width": 16, "dropout": 0.3}, {"width": 16})
PRUNED_AFTER = 1


class TrialLog(CollectSink):
    """Trial ``name``'s sink: appends (name, epoch) to ``log``, shared by the trials, at every
    epoch_ended; its pruner stops the trial after epoch ``pruned_after`` (None: never)."""

    def __init__(self, log: list, name: int, pruned_after: int | None = None) -> None:
        super().__init__()
        self.log, self.name, self.pruned_after = log, name, pruned_after

    def epoch_ended(self, epoch):
        super().epoch_ended(epoch)
        self.log.append((self.name, epoch))
        self.stopping = self.pruned_after is not None and epoch >= self.pruned_after


def poisoned(input_shape, n_classes, width):
    """An MLP whose output is NaN when numpy's first draw after the run's seeding is below 0.5
    (seed 1 of 0, 1, 3), the same architecture for every seed (so every pack takes it)."""
    import keras

    class Scale(keras.layers.Layer):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(), initializer="ones", trainable=False)

        def call(self, x):
            return x * self.scale

    nan = np.random.random() < 0.5  # seeded, as the weights are, by the run's seed
    inputs = keras.Input(input_shape)
    hidden = keras.layers.Dense(width, activation="relu")(keras.layers.Flatten()(inputs))
    scale = Scale()
    outputs = keras.layers.Dense(n_classes, activation="softmax")(scale(hidden))
    scale.scale.assign(math.nan if nan else 1.0)
    return keras.Model(inputs, outputs)


def runs(histories: dict, sink: CollectSink) -> dict:
    """What a trainer gave back and reported: histories, errors, each seed's reported epochs."""
    reported: dict[int, list] = {}
    for seed, epoch, logs in sink.epochs:
        reported.setdefault(seed, []).append([epoch, sorted(logs)])
    ended = [event[1] for event in sink.events if event[0] == "epoch_ended"]
    # What a kept model would hold: each run's epoch, and its weights' sums of magnitudes.
    trained = {seed: [epoch, [float(np.abs(w).sum()) for w in weights]]
               for seed, (epoch, weights) in sink.trained.items()}
    return {"histories": histories, "errors": sink.errors, "reported": reported,
            "late": sink.late_epochs(), "ended": ended, "trained": trained}


def outcome(case_name: str, fast: bool, solo: dict | None = None) -> dict:
    """One case's solo and packed runs on this process' backend, as JSON would give them back
    (seeds as strings): {"pack": the Pack class make_pack chose, "solo": ..., "packed": ...,
    "keras": the plain case's runs with Keras ``fit``, for a fast pack}."""
    if case_name == "cross_trial":
        return cross_trial(fast)
    case = CASES[case_name]
    job, seeds = case.job(), list(case.seeds)
    if solo is None:
        sink = CollectSink()
        solo = runs(train_solo(job, seeds, sink, fast), sink)
    chosen = make_pack([job] * len(seeds), seeds, [job.data.split(s) for s in seeds], fast)
    chosen.close()
    sink = CollectSink()
    packed = runs(train_packed(job, seeds, sink, fast=fast), sink)
    got = {"pack": type(chosen).__name__, "solo": solo, "packed": packed}
    if fast and case_name == "plain":
        sink = CollectSink()
        got["keras"] = runs(train_solo(job, seeds, sink, fast=False), sink)
    return json.loads(json.dumps(got))


def cross_trial(fast: bool) -> dict:
    """The TRIALS trained one by one ("solo": each trial packed alone) and packed together
    ("packed", trial 0 pruned after PRUNED_AFTER epochs), histories keyed "trial:seed"."""
    case = CASES["cross_trial"]
    base, seeds = case.job(), list(case.seeds)
    jobs = [TrainingJob(base.build, params, base.spec, base.data) for params in TRIALS]
    chosen = make_pack([job for job in jobs for _ in seeds], seeds * len(jobs),
                       [base.data.split(s) for s in seeds * len(jobs)], fast)
    chosen.close()
    alone = {f"{i}:{seed}": history for i, job in enumerate(jobs)
             for seed, history in train_runs(job, seeds, CollectSink(), fast=fast).items()}
    log: list = []
    sinks = [TrialLog(log, 0, PRUNED_AFTER), TrialLog(log, 1), TrialLog(log, 2)]
    together = train_trials([(job, seeds, sink) for job, sink in zip(jobs, sinks, strict=True)],
                            fast=fast)
    packed = {f"{i}:{seed}": history for i, histories in enumerate(together)
              for seed, history in histories.items()}
    ended = [[event[1] for event in sink.events if event[0] == "epoch_ended"] for sink in sinks]
    return json.loads(json.dumps({"pack": type(chosen).__name__, "solo": {"histories": alone},
                                  "packed": {"histories": packed, "ended": ended,
                                             "log": log}}))


class Outcomes:
    """Every (pack, case) outcome, computed once per session: in this process when the pack can
    run on its backend, else all of that backend's cases in one subprocess."""

    def __init__(self, directory: Path) -> None:
        import keras

        self.backend = keras.backend.backend()
        self.directory = directory
        self.solo: dict[tuple[str, bool], dict] = {}
        self.computed: dict[tuple[str, str], dict] = {}
        self.elsewhere: dict[str, dict] = {}

    def __call__(self, pack: str, case: str) -> dict:
        kind = PACKS[pack]
        if kind.backend not in (None, self.backend):
            got = self.other_backend(kind.backend)[case]
        else:
            if (pack, case) not in self.computed:
                fast = pack != "functional"
                got = outcome(case, fast=fast, solo=self.solo.get((case, fast)))
                self.solo[case, fast] = got["solo"]
                self.computed[pack, case] = got
            got = self.computed[pack, case]
        assert got["pack"] == kind.pack
        return got

    def other_backend(self, backend: str) -> dict:
        if backend not in self.elsewhere:
            if backend == "jax":
                require("jax", reason="the JAX pack's contract needs jax (pip install -e .[jax])")
            cases = list(CASES)
            path = self.directory / f"{backend}.json"
            env = {**os.environ, "KERAS_BACKEND": backend,
                   "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
                   # JAX's compilation cache: a case's solo runs (one program per seed, the
                   # same program) compile once. The results are the same bits, in less time.
                   "JAX_COMPILATION_CACHE_DIR": str(self.directory / "jax-cache"),
                   "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                   "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
            done = subprocess.run([sys.executable, __file__, str(path), *cases], env=env,
                                  cwd=TESTS.parent, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            self.elsewhere[backend] = json.loads(path.read_text())
        return self.elsewhere[backend]


@pytest.fixture(scope="session")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    return Outcomes(tmp_path_factory.mktemp("contract"))


every_pack = pytest.mark.parametrize("pack", list(PACKS))


@every_pack
def test_first_step_losses_equal_the_solo_runs(outcomes, pack):
    got = outcomes(pack, "first_step")
    solo, packed = got["solo"]["histories"], got["packed"]["histories"]
    for seed in ("0", "1", "2"):
        assert packed[seed]["loss"][0] == pytest.approx(solo[seed]["loss"][0], rel=1e-6)


@every_pack
@pytest.mark.parametrize("case", ["plain", "dropout"])
def test_histories_agree_after_several_epochs(outcomes, pack, case):
    got = outcomes(pack, case)
    solo, packed = got["solo"]["histories"], got["packed"]["histories"]
    for seed in ("0", "1", "2"):
        assert packed[seed]["loss"] == pytest.approx(solo[seed]["loss"], rel=1e-5)
        # Accuracies move in steps of 1/100 here: 1e-6 still catches one flipped prediction.
        assert packed[seed]["val_accuracy"] == pytest.approx(solo[seed]["val_accuracy"], rel=1e-6)
        assert set(packed[seed]) == set(solo[seed])


@pytest.mark.parametrize("pack", ["tf", "jax"])
def test_the_fast_paths_train_as_keras_fit_where_nothing_is_drawn(outcomes, pack):
    got = outcomes(pack, "plain")
    keras_fit, packed = got["keras"]["histories"], got["packed"]["histories"]
    for seed in ("0", "1", "2"):
        assert packed[seed]["loss"] == pytest.approx(keras_fit[seed]["loss"], rel=1e-5)
        assert packed[seed]["val_accuracy"] == pytest.approx(keras_fit[seed]["val_accuracy"],
                                                             rel=1e-6)
        # Keras fit's run hands over its model too: the last epoch's weights.
        fit_model, packed_model = got["keras"]["trained"][seed], got["packed"]["trained"][seed]
        assert fit_model[0] == packed_model[0] == len(keras_fit[seed]["loss"])
        assert fit_model[1] == pytest.approx(packed_model[1], rel=1e-4)


@every_pack
def test_trials_packed_together_train_as_each_trial_alone(outcomes, pack):
    got = outcomes(pack, "cross_trial")
    alone, together = got["solo"]["histories"], got["packed"]["histories"]
    assert set(together) == set(alone) == {f"{i}:{s}" for i in range(3) for s in range(2)}
    for key, history in together.items():
        kept = alone[key]
        if key.startswith("0:"):  # pruned after its first epoch, while the others trained on
            assert len(history["loss"]) == PRUNED_AFTER
            kept = {name: values[:PRUNED_AFTER] for name, values in kept.items()}
        else:
            assert len(history["loss"]) == 2
        assert history["loss"] == pytest.approx(kept["loss"], rel=1e-5)
        assert history["val_accuracy"] == pytest.approx(kept["val_accuracy"], rel=1e-6)
    # Each trial's sink ends the epochs its runs trained, and no more; and they trained together:
    # every trial ends epoch 1 before any ends epoch 2 (one by one, trial 1 would end 1, 2).
    assert got["packed"]["ended"] == [[1], [1, 2], [1, 2]]
    assert got["packed"]["log"] == [[0, 1], [1, 1], [2, 1], [1, 2], [2, 2]]


@every_pack
def test_per_replica_early_stopping_matches_solo(outcomes, pack):
    got = outcomes(pack, "early_stopping")
    solo, packed = got["solo"]["histories"], got["packed"]["histories"]
    seeds = ("0", "1", "2", "3")
    lengths = {s: len(solo[s]["loss"]) for s in seeds}
    assert {s: len(packed[s]["loss"]) for s in seeds} == lengths
    assert len(set(lengths.values())) > 1, "the seeds should stop at different epochs"
    for s in seeds:
        assert packed[s]["test_accuracy"] == pytest.approx(solo[s]["test_accuracy"], rel=1e-6)
        assert packed[s]["test_loss"] == pytest.approx(solo[s]["test_loss"], rel=1e-5)
    # The model each run hands over (what keep_models stores) is its restored best epoch's,
    # the same weights packed as solo, though the pack trained on after the replica stopped.
    kept, alone = got["packed"]["trained"], got["solo"]["trained"]
    for s in seeds:
        val_loss = solo[s]["val_loss"]
        assert kept[s][0] == alone[s][0] == 1 + val_loss.index(min(val_loss))
        assert kept[s][1] == pytest.approx(alone[s][1], rel=1e-4)
    assert any(kept[s][0] < len(solo[s]["loss"]) for s in seeds)  # an earlier epoch restored


@every_pack
def test_test_values_join_each_replicas_last_epoch(outcomes, pack):
    got = outcomes(pack, "early_stopping")
    # Each seed reports its epochs in order, test_* values with its last one only, as solo.
    assert got["packed"]["reported"] == got["solo"]["reported"]
    for reported in got["packed"]["reported"].values():
        epochs = [epoch for epoch, _ in reported]
        assert epochs == list(range(1, len(epochs) + 1))
        tested = [any(key.startswith("test_") for key in keys) for _, keys in reported]
        assert tested == [False] * (len(tested) - 1) + [True]
    # Every replica's epoch, its last (test) record too, reaches the sink before that epoch's
    # epoch_ended, as a solo run's does: the pruner judges every replica trained then. (Solo
    # runs train one seed after another, so only the pack's order is checked here.)
    assert got["packed"]["late"] == []
    longest = max(len(r) for r in got["packed"]["reported"].values())
    assert got["packed"]["ended"] == list(range(1, longest + 1))


@every_pack
def test_a_nan_loss_fails_only_its_replica(outcomes, pack):
    got = outcomes(pack, "nan")
    solo, packed = got["solo"], got["packed"]
    assert packed["errors"] == solo["errors"] == {"1": "NonFiniteLoss: loss became nan in epoch 1"}
    assert set(packed["histories"]) == set(solo["histories"]) == {"0", "3"}
    # The NaN epoch is reported before the run fails.
    assert [epoch for epoch, _ in packed["reported"]["1"]] == [1]
    for seed in ("0", "3"):
        assert packed["histories"][seed]["loss"] == pytest.approx(
            solo["histories"][seed]["loss"], rel=1e-5)
        assert packed["histories"][seed]["val_accuracy"] == pytest.approx(
            solo["histories"][seed]["val_accuracy"], rel=1e-6)


if __name__ == "__main__":  # the subprocess of Outcomes.other_backend: path, then case names
    destination, *names = sys.argv[1:]
    Path(destination).write_text(json.dumps({name: outcome(name, fast=True) for name in names}))
