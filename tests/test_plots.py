"""The four figures, drawn from a real small study and checked through matplotlib's objects."""

from __future__ import annotations

import pytest
from study_edits import copy_study, fail_seed

from hpo import Results
from hpo.plots import KINDS, plot


@pytest.fixture(scope="module")
def results(small_study):
    _, url = small_study
    with Results(url) as r:
        yield r


def test_curves_draw_every_seed_and_the_mean_band(results, tmp_path):
    fig = plot(results, "small", "curves")
    ax = fig.axes[0]
    # validation and train: 3 seeds + 1 mean line each, and one CI band each
    assert len(ax.lines) == 2 * (3 + 1) and len(ax.collections) == 2
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "accuracy"
    best = results.trials("small").sort_values("value").iloc[-1]
    assert f"trial {best['number']} (width={best['width']})" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "validation, each of 3 seeds" in labels and "train, 95 % CI of the mean" in labels
    error = plot(results, "small", "curves", trial=1, error=True).axes[0]
    assert error.get_ylabel() == "error (1 − accuracy)"
    _check_png(fig, tmp_path / "curves.png")


def test_param_plots_the_metric_against_width_with_ci_bars(results, tmp_path):
    fig = plot(results, "small", "param")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "width" and ax.get_xscale() == "linear"  # 4..16: not log
    bars = ax.containers  # one error-bar series each for validation and train
    assert len(bars) == 2
    for bar in bars:
        assert sorted(bar.lines[0].get_xdata()) == [4, 16]  # one mean per width
    _check_png(fig, tmp_path / "param.png")


def test_compare_draws_one_band_per_trial(results, tmp_path):
    ax = plot(results, "small", "compare", trials=[0, 1]).axes[0]
    assert len(ax.lines) == 2 and len(ax.collections) == 2
    widths = results.trials("small").set_index("number")["width"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        f"trial 0 (width={widths[0]})", f"trial 1 (width={widths[1]})"]


def test_seeds_show_every_seed(results, tmp_path):
    fig = plot(results, "small", "seeds")
    ax = fig.axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets")
                 and c.get_offsets().shape[-1] == 2 and len(c.get_offsets()) == 3)
    assert points == 2 * 3
    _check_png(fig, tmp_path / "seeds.png")


def test_kinds():
    assert KINDS == ("curves", "param", "compare", "seeds")


def _check_png(fig, path):
    fig.savefig(path, dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_seeds_and_param_plots_use_the_complete_seeds_and_mark_the_left_out(small_study,
                                                                            tmp_path):
    _, url = small_study
    copy = copy_study(url, tmp_path)
    with Results(copy) as r:
        trials = r.trials("small")
        worse = int(trials.sort_values("value").iloc[0]["number"])
        fail_seed(copy, "small", worse, 1, diverged=False)  # FAIL, its values kept
        values = r.seed_table("small", states=None)
        seeds_ax = plot(r, "small", "seeds").axes[0]
        param_ax = plot(r, "small", "param").axes[0]
    mine = values[values["trial"] == worse].set_index("seed")["value"]
    complete_mean = mine[[0, 2]].mean()
    assert complete_mean != pytest.approx(mine.mean())  # the failed seed would move the mean
    position = trials["number"].tolist().index(worse)
    means = [c.lines[0].get_ydata()[0] for c in seeds_ax.containers]
    assert means[position] == pytest.approx(complete_mean)
    (marked,) = [c for c in seeds_ax.collections
                 if c.get_label() == "run not COMPLETE (left out)"]
    assert marked.get_offsets()[:, 1].tolist() == pytest.approx([mine[1]])
    width = trials.set_index("number").loc[worse, "width"]
    validation = param_ax.containers[0].lines[0]  # validation first, then train
    at = validation.get_xdata().tolist().index(width)
    assert validation.get_ydata()[at] == pytest.approx(complete_mean)
    assert [t.get_text() for t in param_ax.get_legend().get_texts()] == [
        "validation: mean ± 95 % CI over COMPLETE seeds",
        "train: mean ± 95 % CI over COMPLETE seeds"]
