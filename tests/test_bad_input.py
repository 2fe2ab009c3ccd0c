"""The bad-input catalogue: each mistake is one line naming it, exit 2, and no database change.

Every case runs the real ``hpo`` command line (in this process, for speed) on a copy of the small
sweep. Where a study already exists, its database must read the same afterwards (SQL dump); else
no database file may appear. Cases marked ``DEFAULT_STORAGE`` run without ``--storage``: neither
``studies/`` nor any database beside the working directory may appear.
"""

from __future__ import annotations

import sqlite3
import textwrap

import pytest

from hpo.cli import main
from hpo.runner import prepare_study
from hpo.sweep import parse_sweep

from conftest import SMALL_SWEEP

BUILDERS = textwrap.dedent("""
    def raises(input_shape, n_classes, **params):
        raise RuntimeError("this builder is broken")

    def not_a_model(input_shape, n_classes, **params):
        return "a string"

    def broken_space(trial):
        raise RuntimeError("this space is broken")

    def listed_space(trial):
        return [trial.suggest_int("width", 2, 8)]

    def space(trial):
        return {"width": trial.suggest_int("width", 2, 8)}

    def not_a_store():
        return "a string"
""")

RANDOM = ["--set", "search.sampler='random'", "--set", "search.n_trials=2"]
OBJECTIVES = SMALL_SWEEP.replace(
    'direction = "maximize"\nobjective = "val_accuracy"\n',
    'objectives = [{{ metric = "val_accuracy", direction = "maximize" }},\n'
    '              {{ metric = "{second}", direction = "minimize" }}]\n')

# (case id, sweep file text or None for the small sweep, extra arguments, expected in the line)
CASES = [
    ("malformed-toml", "[study\nname = 'x'", [], "not valid TOML"),
    ("unknown-section", SMALL_SWEEP + "\n[trainer]\nepochs = 3\n", [],
     "[trainer]: unknown section"),
    ("unknown-key", None, ["--set", "train.epoch=3"], "train.epoch: unknown key"),
    ("missing-direction", SMALL_SWEEP.replace('direction = "maximize"\n', ""), [],
     "study.direction: missing"),
    ("bad-direction", None, ["--set", "study.direction='up'"], "one of maximize, minimize"),
    ("epochs-type", None, ["--set", "train.epochs='ten'"], "train.epochs = 'ten'"),
    ("epochs-zero", None, ["--set", "train.epochs=0"], "train.epochs = 0: expected an integer"),
    ("batch-negative", None, ["--set", "train.batch_size=-1"], "train.batch_size = -1"),
    ("width-zero", None, ["--set", "search.space.width=[0, 16]"], "'width': 0"),
    ("range-reversed", None, ["--set", "search.space.width={low=256, high=2}", "--set",
                              "search.sampler='random'", "--set", "search.n_trials=2"],
     "low = 256 > high = 2"),
    ("dropout-1.5", None, ["--set", "model.dropout=1.5"], "dropout = 1.5: expected 0 <= dropout"),
    ("lr-zero", None, ["--set", "train.learning_rate=0"], "train.learning_rate = 0"),
    ("lr-text", None, ["--set", "train.learning_rate='fast'"], "train.learning_rate = 'fast'"),
    ("repeats-zero", None, ["--set", "protocol.repeats=0"], "protocol.repeats = 0"),
    ("min-repeats-above", None, ["--set", "protocol.min_repeats=4"],
     "protocol.min_repeats = 4: expected an integer from 1 to protocol.repeats = 3"),
    ("pack-text", None, ["--set", "protocol.pack='yes'"], "protocol.pack = 'yes'"),
    ("unknown-dataset", None, ["--set", "data.dataset='mnits'"], "data.dataset = 'mnits'"),
    ("unknown-builder", None, ["--set", "model.builder='mpl'"], "model.builder = 'mpl'"),
    ("builder-no-module", None, ["--set", "model.builder='nosuchmodule:build'"],
     "model.builder = 'nosuchmodule:build'"),
    ("builder-raises", None, ["--set", "model.builder='user_builders:raises'"],
     "RuntimeError: this builder is broken"),
    ("builder-not-model", None, ["--set", "model.builder='user_builders:not_a_model'"],
     "it returned str; expected a keras.Model"),
    ("unknown-optimizer", None, ["--set", "train.optimizer='adamw2'"],
     "train.optimizer = 'adamw2'"),
    ("unknown-loss", None, ["--set", "train.loss='hinge2'"], "train.loss = 'hinge2'"),
    ("unknown-metric", None, ["--set", "train.metrics=['f1x']"], "train.metrics"),
    ("unknown-sampler", None, ["--set", "search.sampler='bayes'"], "search.sampler = 'bayes'"),
    ("unknown-pruner", None, ["--set", "search.pruner='mean'"], "search.pruner = 'mean'"),
    ("pruner-on-test", None, ["--set", "search.pruner='median'", "--set",
                              "train.evaluate_test=true", "--set",
                              "study.objective='test_accuracy'"], "search.pruner = 'median'"),
    ("objective-unknown", None, ["--set", "study.objective='val_f1'"],
     "study.objective = 'val_f1'"),
    ("grid-with-range", None, ["--set", "search.space.width={low=2, high=256}"],
     "the grid sampler needs a list"),
    ("monitor-unknown", None, ["--set", "train.early_stopping={monitor='val_f1'}"],
     "train.early_stopping.monitor = 'val_f1'"),
    ("set-bad-path", None, ["--set", "train.epochs.x=3"], "train.epochs is a value"),
    ("set-no-value", None, ["--set", "train.epochs"], "expected section.key=value"),
    ("set-bad-toml", None, ["--set", "train.epochs=[1,"], "train.epochs = '[1,'"),
    ("n-trials-zero", None, ["--n-trials", "0"], "--n-trials = 0"),
    ("jobs-zero", None, ["--jobs", "0"], "--jobs = 0"),
    ("missing-data", None, ["ENV:HPO_DATA_DIR=empty"], "no "),
    ("unreachable-storage", None,
     ["--storage", "postgresql+psycopg://hpo@127.0.0.1:9/none"], "cannot open the database"),
    ("unknown-dialect", None, ["--storage", "nosuchdb://x/y"], "storage 'nosuchdb://x/y'"),
    ("other-direction", None, ["EXISTING", "--set", "study.direction='minimize'"],
     "was created with 'maximize'"),
    ("other-settings", None, ["EXISTING", "--set", "train.epochs=5"],
     "train.epochs = 5: study 'small'"),
    # Settings that change the numbers are part of the study: a resume with others is refused.
    ("other-pruner", None, ["EXISTING", "--set", "search.pruner='median'"],
     "search.pruner = 'median': study 'small'"),
    ("other-sampler", None, ["EXISTING", "--set", "search.sampler='random'", "--set",
                             "search.n_trials=2"], "search.sampler = 'random': study 'small'"),
    ("other-sampler-seed", None, ["EXISTING", "--set", "search.seed=7"],
     "search.seed = 7: study 'small'"),
    ("other-min-repeats", None, ["EXISTING", "--set", "protocol.min_repeats=2"],
     "protocol.min_repeats = 2: study 'small'"),
    ("not-utf-8", SMALL_SWEEP.encode().replace(b"limit_train", b"# caf\xe9\nlimit_train"), [],
     "byte b'\\xe9' on line 9 is not UTF-8"),
    ("name-leaves-studies", None, ["DEFAULT_STORAGE", "--set", "study.name='../../x'"],
     "study.name = '../../x': expected letters, digits"),
    ("name-url-escaped", None, ["DEFAULT_STORAGE", "--set", "study.name='%2e%2e%2fx'"],
     "study.name = '%2e%2e%2fx'"),
    ("name-hidden", None, ["DEFAULT_STORAGE", "--set", "study.name='.x'"], "study.name = '.x'"),
    # Integer keywords of the builders (annotated int) take integers, fixed or searched.
    ("width-float", None, ["--set", "model.width=2.5"],
     "model.width = 2.5: expected an integer, as builder 'mlp' annotates width"),
    ("width-float-choice", None, ["--set", "search.space.width=[2.5, 4]"],
     "search.space.width = 2.5: expected an integer"),
    ("width-float-range", None, ["--set", "search.space.width={low=1.5, high=4.0}", "--set",
                                 "search.sampler='random'", "--set", "search.n_trials=2"],
     "search.space.width = {'low': 1.5, 'high': 4.0}: expected an integer range"),
    ("hidden-floats", None, ["--set", "model.hidden=[32.5]"],
     "model.hidden = [32.5]: expected a list of integers"),
    ("num-heads-float", None, ["--set", "model.builder='transformer'", "--set",
                               "model.num_heads=2.5"],
     "model.num_heads = 2.5: expected an integer"),
    ("layer-width-float", None, ["--set", "model.layers=2", "--set", "model.width_2=8.5"],
     "width_2 = 8.5: expected an integer"),
    # Conditional and define-by-run spaces.
    ("grid-conditional", None,
     ["--set", "search.space={layers=[1, 2], width={choices=[4, 16], when={layers=2}}}"],
     "search.space.width.when: the grid sampler cannot leave a parameter out"),
    ("when-later-param", None, [*RANDOM, "--set",
                                "search.space.width={choices=[4, 16], when={layers=2}}"],
     "search.space.width.when.layers: not a parameter declared before this one"),
    ("space-function-raises", None, [*RANDOM, "--set", "search.space='user_builders:broken_space'"],
     "search.space = 'user_builders:broken_space': it raised RuntimeError: this space is broken"),
    ("space-function-not-a-dict", None,
     [*RANDOM, "--set", "search.space='user_builders:listed_space'"],
     "search.space = 'user_builders:listed_space': it returned ["),
    ("space-function-missing", None, [*RANDOM, "--set", "search.space='user_builders:nope'"],
     "search.space = 'user_builders:nope': module 'user_builders' has no function 'nope'"),
    ("space-function-with-grid", None, ["--set", "search.space='user_builders:space'"],
     "search.space = 'user_builders:space': expected a [search.space] table of lists"),
    # [search] enqueue: configurations the space holds, not with a grid.
    ("enqueue-with-grid", None, ["--set", "search.enqueue=[{width=4}]"],
     "search.enqueue = [{'width': 4}]: expected no entries with the grid sampler"),
    ("enqueue-unknown-param", None, [*RANDOM, "--set", "search.enqueue=[{depth=2}]"],
     "search.enqueue[0].depth: not a parameter of search.space; expected one of width"),
    ("enqueue-not-a-choice", None, [*RANDOM, "--set", "search.enqueue=[{width=4}, {width=8}]"],
     "search.enqueue[1].width = 8: expected one of 4, 16"),
    ("enqueue-off-step", None, [*RANDOM, "--set", "search.space.width={low=2, high=10, step=2}",
                                "--set", "search.enqueue=[{width=3}]"],
     "search.enqueue[0].width = 3: expected an integer from 2 to 10 in steps of 2"),
    ("enqueue-not-a-table", None, [*RANDOM, "--set", "search.enqueue=[16]"],
     "search.enqueue[0] = 16: expected a table of parameter = value"),
    ("enqueue-not-a-list", None, [*RANDOM, "--set", "search.enqueue={width=4}"],
     "search.enqueue = {'width': 4}: expected a list of tables"),
    # Kept models: which, and where.
    ("keep-models-unknown", None, ["--set", "train.keep_models='some'"],
     "train.keep_models = 'some': expected one of best, all, none"),
    ("keep-models-searched", None, ["--set", "search.space.keep_models=['all', 'none']"],
     "search.space.keep_models: 'keep_models' cannot be searched"),
    ("artifacts-no-function", None, ["--set", "study.artifacts='user_builders:nope'"],
     "study.artifacts = 'user_builders:nope': module 'user_builders' has no function 'nope'"),
    ("artifacts-not-a-store", None, ["--set", "study.artifacts='user_builders:not_a_store'"],
     "study.artifacts = 'user_builders:not_a_store': the function returned str, not an Optuna"),
    ("artifacts-under-a-file", None, ["--set", "study.artifacts='sweep.toml/models'"],
     "is a file"),
    # Several objectives.
    ("objectives-not-a-list", None, ["--set", "study.objectives='val_accuracy'"],
     "study.objectives = 'val_accuracy': expected a list of tables"),
    ("objectives-beside-direction", None,
     ["--set", "study.objectives=[{metric='val_loss', direction='minimize'}]"],
     "study.objective = 'val_accuracy': not beside study.objectives, whose first objective "
     "has 'val_loss'"),
    ("objectives-empty", None, ["--set", "study.objectives=[]"],
     "study.objectives = []: expected a list of tables"),
    ("objectives-entry-not-table", None, ["--set", "study.objectives=['val_accuracy']"],
     "study.objectives[0] = 'val_accuracy': expected a table { metric, direction, reduce }"),
    ("objectives-bad-reduce", OBJECTIVES.format(second="params").replace(
        'direction = "minimize" }', 'direction = "minimize", reduce = "mean" }'), [],
     "study.objectives[1].reduce = 'mean': expected one of last, best"),
    ("artifacts-function-raises", None, ["--set", "study.artifacts='user_builders:raises'"],
     "study.artifacts = 'user_builders:raises': it raised TypeError"),
    ("objectives-unknown-metric", OBJECTIVES.format(second="val_f1"), [],
     "study.objectives[1].metric = 'val_f1': expected a history key of this sweep"),
    ("objectives-same-metric", OBJECTIVES.format(second="val_accuracy"), [],
     "study.objectives[1].metric = 'val_accuracy': expected a metric not named by an objective"),
    ("objectives-unknown-key", OBJECTIVES.format(second="params").replace(
        'direction = "minimize"', 'direction = "minimize", weight = 2'), [],
     "study.objectives[1].weight: unknown key; expected one of metric, direction, reduce"),
    ("objectives-no-direction", OBJECTIVES.format(second="params").replace(
        ', direction = "minimize"', ""), [], "study.objectives[1].direction: missing"),
    ("objectives-with-pruner", OBJECTIVES.format(second="params"),
     ["--set", "search.pruner='median'"],
     "search.pruner = 'median': expected \"none\" with several"),
    ("pruner-on-params", None, ["--set", "study.objective='params'", "--set",
                                "study.direction='minimize'", "--set", "search.pruner='median'"],
     "search.pruner = 'median': expected \"none\" with study.objective = 'params'"),
    ("other-objectives", OBJECTIVES.format(second="params"), ["EXISTING"],
     "study.objectives directions = ['maximize', 'minimize']: study 'small'"),
    ("choices-and-range", None, [*RANDOM, "--set",
                                 "search.space.width={choices=[4], low=2, when={}}"],
     "search.space.width: choices and low cannot be combined"),
]


def dump(db) -> str:
    with sqlite3.connect(db) as conn:
        return "\n".join(conn.iterdump())


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    (tmp_path / "user_builders.py").write_text(BUILDERS)
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)  # module:function builders import from the working directory
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_the_catalogue_has_thirty_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("text", "args", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_no_change(workdir, monkeypatch, capsys, text, args,
                                                   expected):
    args = list(args)
    sweep = workdir / "sweep.toml"
    if isinstance(text, bytes):
        sweep.write_bytes(text)
    else:
        sweep.write_text(text or SMALL_SWEEP)
    db = workdir / "study.db"
    beside = set(workdir.parent.glob("*.db"))  # where studies/../../x.db would land
    before = None
    if "EXISTING" in args:
        args = [a for a in args if a != "EXISTING"]
        prepare_study(parse_sweep(SMALL_SWEEP), f"sqlite:///{db}")
        before = dump(db)
    for arg in [a for a in args if a.startswith("ENV:")]:
        name, value = arg.removeprefix("ENV:").split("=")
        monkeypatch.setenv(name, str(workdir / value))
        args.remove(arg)
    default_storage = "DEFAULT_STORAGE" in args
    if default_storage:
        args.remove("DEFAULT_STORAGE")
    elif "--storage" not in args:
        args = [*args, "--storage", f"sqlite:///{db}"]
    code = main(["run", str(sweep), *args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("hpo: error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err
    if before is None:
        assert not db.exists()
    else:
        assert dump(db) == before
    if default_storage:
        assert not (workdir / "studies").exists()
        assert set(workdir.parent.glob("*.db")) == beside


def test_debug_shows_the_traceback(workdir, sweep_file):
    with pytest.raises(Exception, match="train.epochs = 0"):
        main(["--debug", "run", str(sweep_file), "--set", "train.epochs=0"])


def test_a_runtime_failure_is_one_line_and_exit_1(workdir, sweep_file, capsys, monkeypatch):
    import hpo.runner

    def lost(*args, **kwargs):
        raise OSError("disk I/O error")

    monkeypatch.setattr(hpo.runner, "Objective", lost)  # a failure after the study exists
    code = main(["run", str(sweep_file), "--storage", f"sqlite:///{workdir / 'x.db'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["hpo: error: OSError: disk I/O error (--debug shows the "
                                 "traceback)"]
