"""What the studio says about a run is what the run store and its process say: resumed runs are live,
runs that never finished an epoch are not usable, and no ETA is shown before the speed is measured."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest

from cifar_core.runs import outcome
from cifar_core.runs import run_progress
from cifar_core.config import TrainConfig
from cifar_core.runs.model_choice import model_choices
from cifar_core.runs.record import LIVE, Run, RunBusyError
from cifar_core.runs.store import RunStore


def _stopped_run(store: RunStore, summary: dict):
    """A run trained by another process (now ended) and stopped, as the launcher leaves it."""
    run = store.create(TrainConfig(weights="none", data_dir="data"), status="queued")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store.set_pid(run.id, trainer.pid)  # records the trainer's start time beside its pid
    finally:
        trainer.kill()
        trainer.wait()
    store.finish(run.id, "stopped", summary=summary)
    return run


def test_a_requeued_run_stays_live_under_the_process_that_queued_it(isolated_artifacts):
    """Resume queues the run under the dashboard's pid until the training's own pid takes over: it is live
    meanwhile, never 'failed ... pid <the dashboard's>'."""
    store = RunStore()
    run = _stopped_run(store, {"epochs_completed": 2, "best_val_accuracy": 0.5})
    queued = store.requeue(run.id)
    assert (queued.status, queued.pid, queued.error) == ("queued", os.getpid(), None)
    assert store.get(run.id).status == "queued" and store.active().id == run.id

    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        store.set_pid(run.id, trainer.pid)  # the launcher hands the row to the training process
        now = store.get(run.id)
        assert now.status in LIVE and now.pid == trainer.pid
        # A second Resume (a double click) is refused while it trains: no second --resume.
        with pytest.raises(RunBusyError) as err:
            store.requeue(run.id)
        assert err.value.run_id == run.id and str(trainer.pid) in str(err.value)
    finally:
        trainer.kill()
        trainer.wait()
    # Its process gone, the store says so: failed, naming the training's pid.
    ended = store.get(run.id)
    assert ended.status == "failed" and f"pid {trainer.pid}" in ended.error
    assert store.active() is None


def test_a_run_stopped_before_its_first_epoch_is_not_usable(isolated_artifacts, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_shipped_model"))
    store = RunStore()
    early = _stopped_run(store, {"epochs_completed": 0, "test_accuracy": 0.102})
    trained = _stopped_run(store, {"epochs_completed": 1, "test_accuracy": 0.3, "best_val_accuracy": 0.3})
    for run in (early, trained):  # a model file, as a stopped run keeps
        run.model_path.write_bytes(b"")
    monkeypatch.setattr(Run, "health", lambda self: None)

    early, trained = store.get(early.id), store.get(trained.id)
    assert not outcome.usable(early) and outcome.usable(trained)
    row = outcome.run_row(early)
    assert row["status"] == "not usable" and "before its first epoch ended" in row["problem"]
    assert outcome.run_row(trained)["status"] == "stopped"
    assert [c.run_id for c in model_choices(store)] == [trained.id]  # never offered, so never the default

    # A run that failed mid-way through its first epoch has no epoch recorded either.
    failed = store.create(TrainConfig(weights="none", data_dir="data"), exclusive=False)
    store.finish(failed.id, "failed", summary={"steps_per_epoch": 10}, error="RuntimeError: boom")
    row = outcome.run_row(store.get(failed.id))
    assert row["status"] == "not usable" and "boom" in row["problem"]


def _training(run_config: dict, **record) -> run_progress.LiveProgress:
    run = Run("r", "running", 0, 0, None, 1, run_config, summary={"stage": {"name": "phase 1/1 (finetune)"}})
    batches = pd.DataFrame([{"phase": "finetune", "epoch": 1, "step": 2, "batch": 2, "steps": 100,
                             "images_per_s": 3.0, "epochs": 1, **record}])
    return run_progress.live_progress(run, batches)


def test_no_eta_until_the_speed_is_measured_over_enough_batches_or_seconds():
    config = {"epochs_head": 0, "epochs_finetune": 1, "batch_size": 1}
    early = _training(config, rate_batches=1, rate_seconds=0.3)
    assert "ETA" not in early.text.replace("ETA after", "") and "images/s" not in early.text
    assert "measuring the speed" in early.text and pd.isna(early.eta_s)
    for enough in ({"rate_batches": 20, "rate_seconds": 6.0}, {"rate_batches": 3, "rate_seconds": 10.0}):
        p = _training(config, **enough)
        assert "3 images/s · ETA" in p.text and p.eta_s > 0
    # Records written before the measurement was recorded: no ETA rather than a wild one.
    assert pd.isna(_training(config).eta_s)

    def stage(since: float, ts: float) -> str:
        run = Run("r", "running", 0, 0, None, 1, {}, summary={"stage": {
            "name": "loading the data: decoding train split", "done": 50, "total": 50000, "since": since, "ts": ts}})
        return run_progress.live_progress(run, pd.DataFrame()).text

    assert "ETA" not in stage(5.0, 6.0) and "ETA" in stage(5.0, 15.0)
