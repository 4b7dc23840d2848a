"""cifar_core.training.trainer: phases, the frozen-feature cache, stopping, crashes, early stopping, seeds, run files, metrics."""

import subprocess

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from cifar_core.model import frozen_features as features
from cifar_core.training import trainer as train_lib
from cifar_core.training.callbacks import RunLogger, StopOnRequest
from cifar_core.predict.evaluate import Interpretation
from cifar_core.model.vgg import batchnorm_momentum, build_base, build_model, dtype_policy, load_model
from cifar_core.runs.record import RunBusyError
from cifar_core.runs.store import RunStore
from cifar_core.training.phases import compile_phase, phases
from cifar_core.training.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    return RunStore(tmp_path / "store")


def test_phases_follow_the_config(tiny_data):
    assert [(p.name, p.lr, p.freeze) for p in phases(tiny_config(tiny_data, finetune_freeze="block4"))] == [
        ("head", 1e-2, "all"), ("finetune", 1e-3, "block4"),
    ]
    assert [p.name for p in phases(tiny_config(tiny_data, epochs_head=0))] == ["finetune"]
    assert [p.name for p in phases(tiny_config(tiny_data, epochs_finetune=0))] == ["head"]


def test_batchnorm_averages_over_the_last_quarter_epoch():
    assert batchnorm_momentum(8) == 0.5  # floor: never average over a fraction of a step
    assert batchnorm_momentum(40) == pytest.approx(0.9)
    assert batchnorm_momentum(100_000) == 0.99  # Keras' default for long epochs


def test_a_short_run_learns(tiny_data, tmp_path):
    """18 steps in all: with Keras' fixed 0.99 momentum the saved BatchNorm statistics would stay
    near their initial values (the issue's chance-level quick runs); the per-run momentum follows the weights."""
    config = tiny_config(tiny_data, epochs_head=0, epochs_finetune=3, finetune_freeze="none", finetune_lr=1e-3)
    learned = train(config, store=RunStore(tmp_path / "auto"))
    assert learned["val_accuracy"] >= 0.5 and learned["test_accuracy"] >= 0.5
    assert "did_not_learn" not in learned


def test_a_chance_level_run_says_so_with_reasons(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(train_lib, "did_not_learn", lambda val_accuracy, num_classes: True)
    config = tiny_config(tiny_data, epochs_head=1, epochs_finetune=0, limit=3)
    summary = train(config, store=RunStore(tmp_path / "store"))
    assert summary["status"] == "completed"
    assert summary["did_not_learn"] and all(isinstance(r, str) and r for r in summary["did_not_learn"])
    assert any("training steps" in r for r in summary["did_not_learn"])  # 2 steps: the first reason
    assert "did not learn" in (tmp_path / "store" / "runs" / summary["run_id"] / "train.log").read_text()


def test_label_smoothing_reaches_the_loss(tiny_data):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(10, activation="softmax")])
    config = tiny_config(tiny_data, label_smoothing=0.1)
    compile_phase(model, config, phases(config)[0], steps=1)
    assert model.loss.get_config()["label_smoothing"] == pytest.approx(0.1)


def test_each_phase_compiles_its_lr_and_trainable_set(tiny_data, store, monkeypatch):
    compiled = []
    original = train_lib.compile_phase

    def recording(model, config, phase, steps):
        original(model, config, phase, steps)
        compiled.append({
            "phase": phase.name,
            "fitted": model.name,
            "lr": float(model.optimizer.learning_rate.numpy()),
            "trainable": [w.path for w in model.trainable_weights],
            "base": [w.numpy().copy() for w in model.get_layer("base").weights],
        })

    monkeypatch.setattr(train_lib, "compile_phase", recording)
    # Augmentation on: both phases fit the whole model on live images.
    train(tiny_config(tiny_data, augment=True, epochs_head=1, epochs_finetune=1, finetune_freeze="block3"), store=store)
    head, finetune = compiled
    assert (head["phase"], head["fitted"], finetune["phase"], finetune["fitted"]) == ("head", "vgg16_bn_cifar10", "finetune", "vgg16_bn_cifar10")
    assert head["lr"] == pytest.approx(1e-2) and finetune["lr"] == pytest.approx(1e-3)
    assert head["trainable"] and not [p for p in head["trainable"] if p.startswith("block")]
    tuned = {p.split("/")[0] for p in finetune["trainable"] if p.startswith("block")}
    assert tuned == {f"block3_{kind}{i}" for kind in ("conv", "bn") for i in (1, 2, 3)}
    # The frozen base, BatchNorm statistics included, did not move during the head phase.
    for before, after in zip(head["base"], finetune["base"], strict=True):
        np.testing.assert_array_equal(before, after)


def test_head_on_cached_features_matches_head_on_live_images(tiny_data, store, monkeypatch):
    calls = []
    original = features.cached_base_features

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(features, "cached_base_features", counting)
    probs = {}
    for cached in (True, False):
        summary = train(tiny_config(tiny_data, epochs_finetune=0, feature_cache=cached), store=store)
        probs[cached] = Interpretation.load(summary["run_dir"]).probs
    assert len(calls) == 2  # train and val features, only in the cached run
    assert probs[True].argmax(1).tolist() == probs[False].argmax(1).tolist()
    np.testing.assert_allclose(probs[True], probs[False], atol=1e-5)


def test_feature_cache_is_hit_on_second_use(tmp_path, monkeypatch):
    base = build_base("vgg16_bn", "none", 32, "block3_pool")
    x = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    progress = []
    first = features.cached_base_features(base, x, input_size=32, cache_dir=tmp_path, progress=lambda *a: progress.append(a))
    assert first.shape == (5, 4, 4, 256) and progress[-1][:2] == (5, 5)

    def not_again(*args, **kwargs):
        raise AssertionError("features recomputed despite the cache")

    monkeypatch.setattr(features, "compute_base_features", not_again)
    np.testing.assert_array_equal(features.cached_base_features(base, x, input_size=32, cache_dir=tmp_path), first)
    # Other weights or other images are another cache entry.
    other = build_base("vgg16_bn", "none", 32, "block3_pool")
    assert features.fingerprint(other, 32, x) != features.fingerprint(base, 32, x)
    assert features.fingerprint(base, 32, x[:4]) != features.fingerprint(base, 32, x)
    with dtype_policy("mixed_bfloat16"):
        bf16 = build_base("vgg16_bn", "none", 32, "block3_pool")
    bf16.set_weights(base.get_weights())
    assert features.fingerprint(bf16, 32, x) != features.fingerprint(base, 32, x)


def test_stop_request_ends_training_within_one_batch(tiny_data, store, monkeypatch):
    events = []

    class StopAfterThree(StopOnRequest):
        def on_train_batch_begin(self, batch, logs=None):
            events.append("begin")
            if events.count("begin") == 3:
                self.store.request_stop(self.run_id)  # arrives from outside while batch 3 runs
                events.append("requested")

        def on_train_batch_end(self, batch, logs=None):
            events.append("end")
            super().on_train_batch_end(batch, logs)

    monkeypatch.setattr(train_lib, "StopOnRequest", StopAfterThree)
    summary = train(tiny_config(tiny_data), store=store)
    after = events[events.index("requested") + 1:]
    assert after.count("end") <= 1 and "begin" not in after  # no batch started after the request
    assert events.count("end") == 3
    assert summary["status"] == "stopped"
    run = store.get(summary["run_id"])
    assert run.status == "stopped" and "finetune" not in store.metrics(run.id, "batch")["phase"].tolist()
    model = load_model(run.model_path)
    assert model.output_shape == (None, 10)
    assert (run.dir / "evaluation.json").is_file()


def test_run_of_a_dead_process_is_reported_failed(tiny_data, store):
    dead = subprocess.Popen(["true"])
    dead.wait()
    run = store.create(tiny_config(tiny_data), pid=dead.pid)
    assert run.status == "failed" and f"pid {dead.pid}" in run.error
    assert store.list()[0].status == "failed"
    live = store.create(tiny_config(tiny_data))  # this process: alive
    assert store.get(live.id).status == "running"
    with pytest.raises(RunBusyError):
        store.create(tiny_config(tiny_data))


def test_training_error_marks_the_run_failed(tmp_path, store):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(Exception, match="No CIFAR-10 data recognised"):
        train(tiny_config(tmp_path / "nothing"), store=store)
    run = store.list()[0]
    assert run.status == "failed" and run.error.startswith("No CIFAR-10 data recognised")  # in words, no type name
    log = (run.dir / "train.log").read_text()
    assert "No CIFAR-10 data recognised" in log and "Traceback" in log  # the details stay in the run's log


def test_early_stopping_restores_the_best_weights(tiny_data, store, monkeypatch):
    class SabotageFromThirdEpoch(RunLogger):
        def on_epoch_begin(self, epoch, logs=None):
            super().on_epoch_begin(epoch, logs)
            if epoch >= 2:  # from now on the head predicts class 0 whatever it sees
                head = self.model if self.model.name == "head" else self.model.get_layer("head")
                kernel, bias = head.layers[-1].get_weights()
                head.layers[-1].set_weights([kernel * 0, bias * 0 + np.eye(10)[0] * 100])

    monkeypatch.setattr(train_lib, "RunLogger", SabotageFromThirdEpoch)
    config = tiny_config(tiny_data, epochs_head=6, epochs_finetune=0, patience=2)
    summary = train(config, store=store)
    val = store.metrics(summary["run_id"], "epoch")["val_accuracy"]
    assert len(val) < 6 and val.iloc[-1] == pytest.approx(0.1)  # stopped early, on sabotaged epochs
    assert val.max() > 0.1
    model = build_model(config, num_classes=10)
    model.load_weights(f"{summary['run_dir']}/after_head.weights.h5")
    assert model.get_layer("head").layers[-1].get_weights()[1][0] < 50  # the sabotage was undone
    assert summary["val_accuracy"] == pytest.approx(val.max())


def test_same_seed_same_run(tiny_run, tiny_data, store):
    _, first = tiny_run
    second = train(tiny_config(tiny_data), store=store)
    assert second["val_accuracy"] == first["val_accuracy"]
    assert second["test_accuracy"] == first["test_accuracy"]
    np.testing.assert_allclose(Interpretation.load(second["run_dir"]).probs, Interpretation.load(first["run_dir"]).probs, atol=1e-5)


def test_run_folder_holds_its_files(tiny_run):
    store, summary = tiny_run
    run_dir = store.get(summary["run_id"]).dir
    for name in ("config.json", "model.keras", "history.csv", "evaluation.json", "test_probs.npz", "train.log"):
        assert (run_dir / name).is_file(), name
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert history["phase"].tolist() == ["head", "head", "finetune", "finetune"]
    with np.load(run_dir / "test_probs.npz", allow_pickle=False) as z:
        assert z["probs"].shape == (40, 10) and z["y"].shape == (40,)
    assert summary["val_accuracy"] == pytest.approx(history["val_accuracy"].max())


def test_metrics_are_streamed_per_batch_and_epoch(tiny_run):
    store, summary = tiny_run
    epochs = store.metrics(summary["run_id"], "epoch")
    for column in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "images_per_s", "phase"):
        assert epochs[column].notna().all(), column
    assert epochs["lr"].tolist() == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3])
    batches = store.metrics(summary["run_id"], "batch")
    for column in ("loss", "accuracy", "lr", "images_per_s", "eta_s", "phase", "batch", "steps"):
        assert batches[column].notna().all(), column
    # At least the last batch of every epoch is logged, and the ETA counts down to zero.
    last = batches[batches["batch"] == batches["steps"]]
    assert last["epoch"].tolist() == [1, 2, 3, 4]
    assert last["eta_s"].iloc[-1] == 0
    assert (batches["images_per_s"] > 0).all()
    assert set(batches["phase"]) == {"head", "finetune"}
