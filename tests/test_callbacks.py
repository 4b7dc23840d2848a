"""The run's training callbacks on a tiny Dense model (no VGG, no data folder): what each writes, and how
a stop request reaches the logger and the checkpoint in the same batch."""

from __future__ import annotations

import math

import keras
import numpy as np

from cifar_core.training import callbacks
from cifar_core.training.callbacks import BestModelCheckpoint, RunLogger, StopOnRequest
from cifar_core.config import TrainConfig
from cifar_core.runs.store import RunStore

STEPS, BATCH = 8, 4


def fit(store: RunStore, run_id: str, checkpoint, *, epochs: int, epoch_offset: int = 0, best: float = -math.inf,
        stop_at: tuple[int, int] | None = None) -> tuple[keras.Model, StopOnRequest, RunLogger, BestModelCheckpoint]:
    """Fit a 4 -> 3 softmax model with the run's callbacks; `stop_at` (epoch, batch), both from 0, requests
    a stop as that batch begins, as `python -m cifar_core stop` would from another process."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS * BATCH, 4)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 3, STEPS * BATCH), 3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy", metrics=["accuracy"])
    stop = StopOnRequest(store, run_id)
    logger = RunLogger(store, run_id, phase="head", epoch_offset=epoch_offset, epochs=epochs, steps=STEPS, batch_size=BATCH)
    best_model = BestModelCheckpoint(store, run_id, full_model=model, path=checkpoint, best=best, epoch_offset=epoch_offset)
    now = {"epoch": -1}

    def request(batch, logs=None):
        if (now["epoch"], batch) == stop_at:
            store.request_stop(run_id)

    requester = keras.callbacks.LambdaCallback(on_epoch_begin=lambda e, logs=None: now.update(epoch=e), on_train_batch_begin=request)
    model.fit(x, y, validation_data=(x, y), batch_size=BATCH, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[requester, stop, logger, best_model])
    return model, stop, logger, best_model


def test_a_stop_ends_fit_in_its_batch_which_is_logged_while_its_epoch_is_not(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks, "BATCH_LOG_INTERVAL_S", 3600.0)  # only the records that are never skipped
    store = RunStore(tmp_path / "store")
    run = store.create(TrainConfig())
    checkpoint = run.dir / "model.keras"
    _, stop, logger, best_model = fit(store, run.id, checkpoint, epochs=3, stop_at=(1, 2))

    assert stop.stopped and logger.last_epoch == 1
    assert store.metrics(run.id, "epoch")["epoch"].tolist() == [1]  # the cut-short epoch 2 has no record
    b = store.metrics(run.id, "batch")
    # The first batch, the epoch's last one, and the batch the stop ended.
    assert list(zip(b["epoch"], b["batch"])) == [(1, 1), (1, STEPS), (2, 3)]
    assert b["eta_s"].iloc[-1] > 0 and b["epochs"].iloc[-1] == 3
    summary = store.get(run.id).summary
    assert summary["best_epoch"] == 1 and checkpoint.is_file()  # saved after epoch 1 only
    assert best_model.best == summary["best_val_accuracy"] == store.metrics(run.id, "epoch")["val_accuracy"].iloc[0]


def test_a_stop_in_the_first_epoch_leaves_no_epoch_and_no_checkpoint(tmp_path):
    store = RunStore(tmp_path / "store")
    run = store.create(TrainConfig())
    checkpoint = run.dir / "model.keras"
    _, stop, logger, _ = fit(store, run.id, checkpoint, epochs=3, epoch_offset=2, stop_at=(0, 1))

    assert stop.stopped and logger.last_epoch == 2  # the epochs of the phases before
    assert store.metrics(run.id, "epoch").empty
    assert store.metrics(run.id, "batch")["step"].tolist() == [2 * STEPS + 1, 2 * STEPS + 2]
    # Keras still calls on_epoch_end (with validation numbers) for the cut-short epoch: not saved.
    assert not checkpoint.exists() and "best_epoch" not in store.get(run.id).summary


def test_epochs_count_across_phases_and_the_checkpoint_keeps_the_best(tmp_path):
    store = RunStore(tmp_path / "store")
    run = store.create(TrainConfig())
    checkpoint = run.dir / "model.keras"
    _, stop, logger, best_model = fit(store, run.id, checkpoint, epochs=3, epoch_offset=2)

    assert not stop.stopped and logger.last_epoch == 5
    epochs = store.metrics(run.id, "epoch")
    assert epochs["epoch"].tolist() == [3, 4, 5] and set(epochs["phase"]) == {"head"}
    summary = store.get(run.id).summary
    assert summary["best_val_accuracy"] == best_model.best == epochs["val_accuracy"].max()
    assert summary["best_epoch"] == epochs["epoch"][epochs["val_accuracy"] == epochs["val_accuracy"].max()].iloc[0]
    assert keras.saving.load_model(checkpoint).count_params() == 15


def test_the_checkpoint_is_not_rewritten_without_an_improvement(tmp_path):
    store = RunStore(tmp_path / "store")
    run = store.create(TrainConfig())
    checkpoint = run.dir / "model.keras"
    checkpoint.write_bytes(b"an earlier phase's best model")
    _, _, _, best_model = fit(store, run.id, checkpoint, epochs=2, best=1.01)  # no accuracy beats it

    assert checkpoint.read_bytes() == b"an earlier phase's best model"
    assert best_model.best == 1.01 and "best_epoch" not in store.get(run.id).summary
