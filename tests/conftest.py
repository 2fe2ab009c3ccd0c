"""Shared fixtures: real MNIST from $HPO_DATA_DIR (default ../shared/datasets), real SQLite."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# A script the resume tests run in subprocesses; importing it here would hook this process.
collect_ignore = ["kill_harness.py"]
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
if "HPO_DATA_DIR" not in os.environ and _SHARED.exists():
    os.environ["HPO_DATA_DIR"] = str(_SHARED)

# A small but real protocol: 300 MNIST training examples, 200 test examples for validation.
SMALL_SWEEP = """
[study]
name = "small"
direction = "maximize"
objective = "val_accuracy"

[data]
dataset = "mnist"
limit_train = 300
limit_test = 200

[model]
builder = "mlp"

[train]
epochs = 2
batch_size = 32
learning_rate = 0.01

[protocol]
repeats = 3
seed = 0

[search.space]
width = [4, 16]
"""


def require(module: str, reason: str):
    """Import an optional dependency, skipping the test without it, except under CI: CI
    installs every extra, so a missing one there is a failure rather than a silent skip."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        import importlib

        return importlib.import_module(module)
    return pytest.importorskip(module, reason=reason)


@pytest.fixture(scope="session")
def mnist_data() -> Path:
    """The folder holding mnist.npz; requested by the fixtures that train (not autouse: pure
    tests run without data). A test that loads MNIST without it fails on the loader's own
    message, which names HPO_DATA_DIR."""
    data_dir = os.environ.get("HPO_DATA_DIR")
    if not data_dir or not (Path(data_dir) / "mnist.npz").exists():
        pytest.fail("set HPO_DATA_DIR to a folder holding mnist.npz (e.g. ../shared/datasets)")
    return Path(data_dir)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server URL: ``$HPO_TEST_POSTGRES_URL`` (CI starts one), else a throw-away
    server started here when Debian's postgresql is installed. Missing under CI is a failure."""
    url = os.environ.get("HPO_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    script = Path(__file__).resolve().parents[1] / ".ci" / "postgres"
    directory = tempfile.mkdtemp(prefix="hpo-test-pg-")  # in /tmp: the postgres user can enter
    started = subprocess.run([str(script), "start", directory, str(55400 + os.getpid() % 90)],
                             capture_output=True, text=True)
    if started.returncode != 0:
        message = f"no PostgreSQL server for the scale-out tests: {started.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI must run them: set HPO_TEST_POSTGRES_URL)")
        pytest.skip(message)
    try:
        yield started.stdout.strip()
    finally:
        subprocess.run([str(script), "stop", directory], capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str):
    """A fresh database on the test server, dropped afterwards."""
    import sqlalchemy as sa

    name = f"hpo_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'study.db'}"


@pytest.fixture
def store(sqlite_url: str):
    """A new study database (real SQLite, hpo's and Optuna's tables), closed afterwards."""
    from hpo.store import Store

    store = Store.open(sqlite_url, create=True)
    yield store
    store.dispose()


@pytest.fixture
def sweep_file(tmp_path: Path, mnist_data: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(SMALL_SWEEP)
    return path


@pytest.fixture(scope="session")
def small_study(tmp_path_factory: pytest.TempPathFactory, mnist_data: Path):
    """One real sweep (2 widths × 3 seeds × 2 epochs), run once and read by many tests."""
    from hpo import parse_sweep, run_sweep

    url = f"sqlite:///{tmp_path_factory.mktemp('small') / 'small.db'}"
    sweep = parse_sweep(SMALL_SWEEP)
    run_sweep(sweep, storage=url)
    return sweep, url


def kept_model_checks(url: str, study: str, sweep) -> list[dict]:
    """Each kept model of ``study`` loaded with plain ``keras.saving.load_model``, evaluated on
    its seed's validation split: its accuracy beside the ``val_accuracy`` recorded for the
    epoch its weights are from. Also run inside the JAX backend's subprocess."""
    import keras

    from hpo import Results
    from hpo.config import uses_sparse_targets
    from hpo.datasets.prepare import encode_targets
    from hpo.runner import load_data

    data = load_data(sweep)
    checks = []
    with Results(url) as r:
        epochs = r.epochs(study)
        for row in r.models(study).itertuples():
            model = r.load_model(study, row.trial, row.seed)
            split = data.for_seed(row.seed)
            y_val = encode_targets(split.y_val, split.n_classes,
                                   uses_sparse_targets(sweep.train.loss))
            evaluated = model.evaluate(split.x_val, y_val, verbose=0, return_dict=True)
            recorded = epochs[(epochs["trial"] == row.trial) & (epochs["seed"] == row.seed)
                              & (epochs["epoch"] == row.epoch)
                              & (epochs["metric"] == "val_accuracy")]["value"].item()
            checks.append({"trial": row.trial, "seed": row.seed, "epoch": row.epoch,
                           "evaluated": float(evaluated["accuracy"]), "recorded": recorded,
                           "backend": keras.backend.backend()})
    return checks


def write_cifar10(directory: Path, n_train: int = 120, n_test: int = 40) -> dict:
    """A small cifar10.npz in Keras' format: uint8 images (N, 32, 32, 3), labels (N, 1)."""
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype="uint8"),
        "y_train": (np.arange(n_train) % 10).astype("uint8").reshape(-1, 1),
        "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype="uint8"),
        "y_test": (np.arange(n_test) % 10).astype("uint8").reshape(-1, 1),
    }
    np.savez_compressed(directory / "cifar10.npz", **arrays)
    return arrays


class CollectSink:
    """A trainer's RunSink that keeps what it is told (trainers are tested without a database):
    each run's reported epochs, failures, and the order of ``run_epoch`` and ``epoch_ended``."""

    stopping = False

    def __init__(self) -> None:
        self.epochs: list[tuple[int, int, dict]] = []
        self.errors: dict[int, str] = {}
        self.events: list[tuple] = []
        self.trained: dict[int, tuple[int, list]] = {}  # seed -> (epoch, weights)

    def run_started(self, seed): pass

    def run_epoch(self, seed, epoch, logs):
        self.epochs.append((seed, epoch, dict(logs)))
        self.events.append(("run_epoch", seed, epoch))

    def epoch_ended(self, epoch):
        self.events.append(("epoch_ended", epoch))

    def run_trained(self, seed, epoch, model):
        self.trained[seed] = (epoch, [w.copy() for w in model.get_weights()])

    def run_finished(self, seed, error):
        if error:
            self.errors[seed] = error

    def late_epochs(self) -> list[tuple[int, int]]:
        """(seed, epoch) reported after that epoch's ``epoch_ended`` (the pruner would not have
        seen them)."""
        ended, late = set(), []
        for event in self.events:
            if event[0] == "epoch_ended":
                ended.add(event[1])
            elif event[2] in ended:
                late.append(event[1:])
        return late


def study_contents(url: str, study: str = "small") -> dict:
    """What a study holds, for comparing a recovered study with an uninterrupted one: every run's
    final metrics, every trial's statistics and intermediate values, and the row counts."""
    import optuna
    import sqlalchemy as sa

    from hpo import Results

    with Results(url) as r:
        runs = r.runs(study).set_index(["trial", "seed"]).sort_index()
        trials = r.trials(study).set_index("number").sort_index()
        values = {t.number: t.intermediate_values
                  for t in optuna.load_study(study_name=study, storage=r.store.optuna).trials}
        with r.store.engine.connect() as conn:
            per_trial = conn.execute(sa.text(
                "SELECT t.number, COUNT(*), SUM(CASE WHEN r.state = 'COMPLETE' THEN 1 ELSE 0 END)"
                " FROM hpo_runs r JOIN trials t ON t.trial_id = r.trial_id"
                " GROUP BY t.number ORDER BY t.number")).all()
            epochs = conn.execute(sa.text("SELECT COUNT(*) FROM hpo_epochs")).scalar()
    return {"runs": runs, "trials": trials, "intermediate": values,
            "per_trial": [tuple(row) for row in per_trial], "epochs": epochs}


def assert_same_study(got: dict, expected: dict) -> None:
    """Equal to the last bit that training repeats exactly: states, counts, values."""
    assert got["per_trial"] == expected["per_trial"]
    assert got["epochs"] == expected["epochs"]
    assert list(got["runs"].index) == list(expected["runs"].index)
    assert (got["runs"]["state"] == "COMPLETE").all()
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert got["runs"][metric].to_numpy() == pytest.approx(
            expected["runs"][metric].to_numpy(), abs=1e-6)
    columns = ["state", "n", "value", "mean", "std", "ci95_low", "ci95_high"]
    assert got["trials"]["state"].tolist() == expected["trials"]["state"].tolist()
    assert got["trials"]["n"].tolist() == expected["trials"]["n"].tolist()
    for column in columns[2:]:
        assert got["trials"][column].to_numpy() == pytest.approx(
            expected["trials"][column].to_numpy(), abs=1e-6)
    assert got["intermediate"].keys() == expected["intermediate"].keys()
    for trial, values in expected["intermediate"].items():
        assert got["intermediate"][trial] == pytest.approx(values, abs=1e-6)

