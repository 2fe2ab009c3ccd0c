"""optuna-dashboard, for real: its server on a free loopback port, its JSON API, a browser."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import optuna
import pytest
from study_edits import copy_study

from hpo import Results

from conftest import require

require("optuna_dashboard", reason="needs the dashboard extra")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def dashboard(small_study, tmp_path):
    _, url = small_study
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "hpo", "dashboard", "small", "--storage", url, "--port",
         str(port)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            if server.poll() is not None:
                pytest.fail(f"the dashboard exited: {server.stdout.read()}")
            try:
                get_json(f"{base}/api/studies")
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the dashboard did not answer within 60 s")
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_api_shows_values_attributes_curves_note_and_figures(dashboard, small_study):
    sweep, _ = small_study
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    (study,) = [s for s in studies if s["study_name"] == "small"]
    detail = get_json(f"{dashboard}/api/studies/{study['study_id']}")
    assert detail["name"] == "small" and len(detail["trials"]) == 2
    for trial in detail["trials"]:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        assert {"n", "mean", "var", "std", "sem", "ci95_low", "ci95_high", "seeds"} <= set(attrs)
        assert float(attrs["mean"]) == pytest.approx(trial["values"][0])
        assert len(trial["intermediate_values"]) == sweep.train.epochs
    assert "an hpo study" in detail["note"]["body"] and "3 times" in detail["note"]["body"]
    assert len(detail["plotly_graph_objects"]) == 2
    # The best trial's kept models are listed on its page and served from the study's store.
    best = max(detail["trials"], key=lambda t: t["values"][0])
    assert sorted(a["filename"] for t in detail["trials"] for a in t["artifacts"]) == [
        f"trial-{best['number']}-seed-{s}.keras" for s in (0, 1, 2)]
    artifact = best["artifacts"][0]["artifact_id"]
    with urllib.request.urlopen(f"{dashboard}/artifacts/{study['study_id']}/"
                                f"{best['trial_id']}/{artifact}", timeout=10) as response:
        assert response.read(2) == b"PK"  # a .keras file is a zip archive


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="no chromium here")
def test_the_study_page_renders_in_a_browser(dashboard, small_study, tmp_path):
    assert CHROMIUM, "CI must have Debian's chromium (.ci/run installs it)"
    studies = get_json(f"{dashboard}/api/studies")["study_summaries"]
    study_id = next(s["study_id"] for s in studies if s["study_name"] == "small")

    def render(page: str) -> str:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--disable-component-update", "--no-first-run",
             f"--user-data-dir={tmp_path / page.replace('/', '_')}",
             "--virtual-time-budget=15000", "--dump-dom",
             f"{dashboard}/dashboard/studies/{study_id}{page}"],
            capture_output=True, text=True, timeout=120,
        ).stdout

    study_page = render("")
    assert f"small (id={study_id})" in study_page
    widths = _widths(small_study[1])
    for trial in (0, 1):  # hpo's Plotly figures
        assert f"trial {trial} (width={widths[trial]}): mean ± 95 % CI over seeds" in study_page
    assert "Best Trial" in study_page
    assert "3 times" in render("/note")  # the protocol note, rendered from Markdown


def _widths(url: str) -> dict[int, int]:
    with Results(url) as r:
        return r.trials("small").set_index("number")["width"].to_dict()


def test_annotate_names_the_objective_and_titles_each_figure_with_its_parameters(small_study,
                                                                                 tmp_path):
    from hpo.dashboard import annotate

    url = copy_study(small_study[1], tmp_path)
    with Results(url) as r:
        assert annotate(r, "small") == 2
        study = optuna.load_study(study_name="small", storage=r.store.optuna)
        attrs = r.store.optuna.get_study_system_attrs(study._study_id)
    assert study.metric_names == ["val_accuracy"]  # the dashboard's name for the value
    for trial, width in _widths(url).items():
        prefix = f"dashboard:plot_data:hpo-trial-{trial}:"  # optuna-dashboard's chunks
        figure = json.loads("".join(attrs[f"{prefix}{i}"] for i in range(
            sum(key.startswith(prefix) for key in attrs))))
        assert figure["layout"]["title"]["text"] == (
            f"trial {trial} (width={width}): mean ± 95 % CI over seeds")
