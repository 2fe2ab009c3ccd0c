"""The sweep's study: created with its identity, reopened only for the same experiment, and the
sampler and pruner every name of the sweep file stands for."""

from __future__ import annotations

import json

import optuna
import pytest

from hpo import SweepError, parse_sweep, run_sweep
from hpo.config import PRUNERS, SAMPLER_PACKAGES, SAMPLERS
from hpo.study import (
    ERROR_ATTR,
    FAILED_SEEDS_ATTR,
    PRUNED_AT_ATTR,
    SEEDS_ATTR,
    SKIPPED_ATTR,
    SWEEP_ATTR,
    make_pruner,
    make_sampler,
    open_study,
)

from conftest import SMALL_SWEEP


def test_a_study_with_other_settings_is_refused_and_left_unchanged(small_study):
    _, url = small_study
    changed = parse_sweep(SMALL_SWEEP, ["train.epochs=3"])
    with pytest.raises(SweepError, match=r"train.epochs = 3: study 'small' .* was run with 2"):
        run_sweep(changed, storage=url)
    flipped = parse_sweep(SMALL_SWEEP, ["study.direction='minimize'"])
    with pytest.raises(SweepError, match="was created with 'maximize'"):
        run_sweep(flipped, storage=url)
    assert len(optuna.load_study(study_name="small", storage=url).trials) == 2


def test_the_attribute_keys_are_the_ones_existing_databases_hold():
    # Studies written by earlier versions are read back and resumed by these keys.
    assert (SWEEP_ATTR, SKIPPED_ATTR) == ("hpo.sweep", "hpo.skipped")
    assert (SEEDS_ATTR, PRUNED_AT_ATTR, FAILED_SEEDS_ATTR, ERROR_ATTR) == (
        "seeds", "pruned_at_epoch", "failed_seeds", "error")


def test_a_new_study_stores_the_sweep_identity_and_reopens_as_the_same_study(store):
    sweep = parse_sweep(SMALL_SWEEP)
    created = open_study(sweep, store)
    reopened = open_study(sweep, store)
    assert reopened._study_id == created._study_id
    assert reopened.user_attrs[SWEEP_ATTR]["train"]["epochs"] == 2
    assert reopened.direction == optuna.study.StudyDirection.MAXIMIZE


def test_an_empty_study_made_elsewhere_is_adopted_and_one_with_trials_is_refused(store):
    optuna.create_study(study_name="small", storage=store.optuna, direction="maximize")
    sweep = parse_sweep(SMALL_SWEEP)
    adopted = open_study(sweep, store)
    assert adopted.user_attrs[SWEEP_ATTR] == json.loads(json.dumps(sweep.identity()))
    by_hand = optuna.create_study(study_name="by-hand", storage=store.optuna,
                                  direction="maximize")
    by_hand.add_trial(optuna.trial.create_trial(value=0.5))
    with pytest.raises(SweepError, match="study.name = 'by-hand': a study of that name .* was "
                                         "not made by hpo"):
        open_study(parse_sweep(SMALL_SWEEP, ["study.name='by-hand'"]), store)


def test_a_setting_an_earlier_hpo_did_not_record_is_named_as_such(store):
    sweep = parse_sweep(SMALL_SWEEP)
    study = open_study(sweep, store)
    older = study.user_attrs[SWEEP_ATTR]
    del older["protocol"]["min_repeats"]
    study.set_user_attr(SWEEP_ATTR, older)
    with pytest.raises(SweepError, match="protocol.min_repeats = 3: study 'small' .* was made by "
                                         "an earlier hpo that did not record it"):
        open_study(sweep, store)


def test_a_changed_pruner_is_named_rather_than_the_pack_it_brings_into_the_identity(store):
    open_study(parse_sweep(SMALL_SWEEP), store)
    with pytest.raises(SweepError, match="search.pruner = 'median': study 'small' .* was run "
                                         "with 'none'"):
        open_study(parse_sweep(SMALL_SWEEP, ["search.pruner='median'"]), store)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_a_sweep_may_name_is_made(name):
    if name in SAMPLER_PACKAGES:
        pytest.importorskip(SAMPLER_PACKAGES[name], reason=f"the {name} sampler is not installed")
    budget = [] if name == "grid" else ["search.n_trials=2"]
    sweep = parse_sweep(SMALL_SWEEP, [f"search.sampler='{name}'", *budget])
    expected = {"grid": "GridSampler", "random": "RandomSampler", "tpe": "TPESampler",
                "nsgaii": "NSGAIISampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                "qmc": "QMCSampler"}[name]
    sampler = make_sampler(sweep)
    assert getattr(optuna.samplers, expected) in type(sampler).__mro__


def test_the_sampler_is_seeded_by_search_seed():
    def first_draw(seed: int) -> float:
        sweep = parse_sweep(SMALL_SWEEP, ["search.sampler='random'", "search.n_trials=2",
                                          f"search.seed={seed}"])
        return optuna.create_study(sampler=make_sampler(sweep)).ask().suggest_float("x", 0, 1)

    assert first_draw(7) == first_draw(7) != first_draw(8)


@pytest.mark.parametrize("name", PRUNERS)
def test_every_pruner_a_sweep_may_name_is_made(name):
    pruner = make_pruner(parse_sweep(SMALL_SWEEP, [f"search.pruner='{name}'",
                                                   "train.epochs=7"]))
    expected = {"none": "NopPruner", "median": "MedianPruner", "hyperband": "HyperbandPruner",
                "successive_halving": "SuccessiveHalvingPruner"}[name]
    assert type(pruner) is getattr(optuna.pruners, expected)
    if name == "median":  # judged after 3 finished trials, from epoch 3 on
        assert (pruner._n_startup_trials, pruner._n_warmup_steps) == (3, 3)
    if name == "hyperband":  # epochs are the resource
        assert (pruner._min_resource, pruner._max_resource) == (1, 7)


def test_the_grid_sampler_leaves_stopping_to_hpos_own_loop():
    # Optuna's GridSampler stops the study after its last point, which only study.optimize
    # allows: hpo asks and tells, and checks is_exhausted itself.
    sampler = make_sampler(parse_sweep(SMALL_SWEEP))
    study = optuna.create_study(sampler=sampler, direction="maximize")
    widths = []
    for _ in range(2):
        trial = study.ask()
        widths.append(trial.suggest_categorical("width", [4, 16]))
        study.tell(trial, 0.5)
    assert sorted(widths) == [4, 16] and sampler.is_exhausted(study)
