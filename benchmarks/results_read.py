"""How fast Results reads epoch metrics into pandas: a study of 1,000,000 (run, epoch, metric) rows.

The study is real (Optuna trials, hpo's tables, SQLite); its values are random numbers written in
bulk. Writes benchmarks/RESULTS_READ.md.

    python benchmarks/results_read.py
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hpo import Results  # noqa: E402
from hpo.store import Store  # noqa: E402
from hpo.store.schema import EpochMetric, Run  # noqa: E402

TRIALS, SEEDS, EPOCHS, METRICS = 100, 10, 250, ("loss", "accuracy", "val_loss", "val_accuracy")


def build(url: str) -> None:
    store = Store.open(url, create=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="big", storage=store.optuna)
    rng = np.random.default_rng(0)
    for _ in range(TRIALS):
        trial = study.ask()
        with store.engine.begin() as conn:
            for seed in range(SEEDS):
                run_id = conn.execute(sa.insert(Run).values(
                    trial_id=trial._trial_id, seed=seed, state="COMPLETE",
                    started_at=sa.func.now()).returning(Run.run_id)).scalar_one()
                values = rng.random(EPOCHS * len(METRICS))
                conn.execute(sa.insert(EpochMetric), [
                    {"run_id": run_id, "epoch": e + 1, "metric": m,
                     "value": float(values[e * len(METRICS) + i])}
                    for e in range(EPOCHS) for i, m in enumerate(METRICS)])
        study.tell(trial, 0.5)
    store.dispose()


def main() -> None:
    url = f"sqlite:///{tempfile.mkdtemp()}/big.db"
    began = time.perf_counter()
    build(url)
    print(f"built in {time.perf_counter() - began:.0f} s", flush=True)
    times = []
    for _ in range(5):
        with Results(url) as results:
            began = time.perf_counter()
            frame = results.epochs("big")
            times.append(time.perf_counter() - began)
    assert len(frame) == TRIALS * SEEDS * EPOCHS * len(METRICS)
    text = "\n".join([
        "# Reading epoch metrics into pandas",
        "",
        "Command: `python benchmarks/results_read.py` — "
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores.",
        "",
        f"A SQLite study of {TRIALS} trials × {SEEDS} seeds × {EPOCHS} epochs × {len(METRICS)} "
        f"metrics = {len(frame):,} rows in `hpo_epochs`; `Results.epochs(study)` (one SQL query "
        "joining hpo's tables with Optuna's, into a DataFrame with trial, seed, epoch, metric, "
        "value), 5 reads:",
        "",
        f"- median {statistics.median(times):.2f} s; all: "
        + ", ".join(f"{t:.2f} s" for t in times),
        "",
    ])
    (ROOT / "benchmarks" / "RESULTS_READ.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
