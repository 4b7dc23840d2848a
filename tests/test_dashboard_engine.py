"""The dashboard's engine helpers: the training form, filtering, live progress, model choices, figures."""

from __future__ import annotations

import dataclasses
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from cifar_core.views import plots
from cifar_core.runs import run_progress
from cifar_core.predict import split_predictions
from cifar_core.views import train_form
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.predict.evaluate import Interpretation
from cifar_core.runs.model_choice import model_choices, pick
from cifar_core.runs.record import Run
from cifar_core.runs.store import RunStore


def test_the_form_has_every_trainconfig_field_once():
    form = [f.name for fields in train_form.sections().values() for f in fields]
    assert sorted(form) == sorted(f.name for f in dataclasses.fields(TrainConfig))
    assert all(f.metadata["label"] and f.metadata["help"] for f in dataclasses.fields(TrainConfig))


def test_config_from_form_parses_text_and_reports_each_bad_field_in_words():
    values = {**train_form.form_defaults(), "head_units": "128, 64", "limit": "", "lr": "3e-4", "epochs_head": "2"}
    config = train_form.config_from_form(values)
    assert config.head_units == (128, 64) and config.limit is None and config.lr == 3e-4 and config.epochs_head == 2
    with pytest.raises(ConfigError) as err:
        train_form.config_from_form({**values, "lr": "fast", "dropout": "1.5", "head_units": "512, abc", "epochs_finetune": "abc"})
    assert set(err.value.errors) == {"lr", "dropout", "head_units", "epochs_finetune"}
    for message in err.value.errors.values():
        assert "tuple" not in message and "float" not in message and "int" not in message.split()


@pytest.mark.parametrize("text", ["²", "٣", "1.5", "1e3", "", "ten"])
def test_whole_number_fields_reject_anything_but_ascii_digits(text):
    with pytest.raises(ConfigError) as err:
        train_form.config_from_form({**train_form.form_defaults(), "epochs_finetune": text})
    assert list(err.value.errors) == ["epochs_finetune"]


@pytest.mark.parametrize("preset", list(train_form.PRESETS))
def test_every_preset_round_trips_through_the_form(preset):
    defaults = train_form.form_defaults(preset)
    texts = {f.name: train_form.widget_value(f, defaults[f.name]) for f in train_form.form_fields()}
    assert train_form.config_from_form(texts).to_dict() == {**defaults, "data_dir": None}


def test_form_defaults_from_a_run_keep_its_settings():
    config = {**TrainConfig(weights="none", arch="vgg16_bn", width=0.5).to_dict(), "data_dir": None}
    assert train_form.form_defaults(base=config)["width"] == 0.5


def test_filter_predictions_filters_and_sorts():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], dtype=np.float32)
    table = Interpretation(probs, np.array([0, 0, 1]), ("cat", "dog")).table()
    wrong = split_predictions.filter_predictions(table, correct=False)
    assert list(wrong.index) == [1, 2]
    by_loss = split_predictions.filter_predictions(table, sort_by="loss", descending=True)
    assert list(by_loss.index) == [1, 2, 0]
    assert list(split_predictions.filter_predictions(table, true=["dog"]).index) == [2]
    assert list(split_predictions.filter_predictions(table, confidence=(0.85, 1.0)).index) == [0]


def test_live_progress_spans_all_planned_epochs_and_counts_the_evaluation():
    run = Run("r", "running", 0, 0, None, 1, {"epochs_head": 2, "epochs_finetune": 2, "batch_size": 10},
              summary={"stage": {"name": "phase 2/2 (finetune)"}, "test_images": 300})
    batches = pd.DataFrame([{"phase": "finetune", "epoch": 3, "step": 25, "batch": 5, "steps": 10,
                             "images_per_s": 100.0, "eta_s": 1.0, "epochs": 4, "rate_batches": 24, "rate_seconds": 2.4}])
    p = run_progress.live_progress(run, batches)
    assert p.fraction == pytest.approx(0.95 * 25 / 40)
    # 15 batches left at 10 batches/s, plus 300 test images at 3x the training speed
    assert p.eta_s == pytest.approx(15 / 10 + 1.0)
    assert "Phase 2/2 (finetune) · epoch 3/4 · batch 5/10" in p.text


def test_live_progress_names_stages_before_and_after_training():
    def at(stage):
        return run_progress.live_progress(Run("r", "running", 0, 0, None, 1, {}, summary={"stage": stage}), pd.DataFrame())

    assert "Starting" in run_progress.live_progress(Run("r", "queued", 0, 0, None, 1, {}), pd.DataFrame()).text
    loading = at({"name": "loading the data: decoding train split", "done": 2000, "total": 50000, "since": 10.0, "ts": 22.0})
    assert "2,000/50,000" in loading.text and "ETA 4m 48s" in loading.text
    evaluating = at({"name": "evaluating the best model on the test set: predicting", "done": 5000, "total": 10000,
                     "since": 0.0, "ts": 5.0})
    assert evaluating.text.startswith("Evaluating") and evaluating.fraction == pytest.approx(0.975)


def _finished_copy(store, tiny_store, summary, status, result):
    run = store.create(TrainConfig.from_dict(tiny_store.get(summary["run_id"]).config), exclusive=False)
    shutil.copy(tiny_store.get(summary["run_id"]).model_path, run.model_path)
    store.finish(run.id, status, summary=result)
    return run


def test_the_default_model_is_the_most_accurate_one_that_learned(tiny_run, tmp_path, monkeypatch):
    tiny_store, summary = tiny_run
    store = RunStore(tmp_path / "artifacts")
    good = _finished_copy(store, tiny_store, summary, "completed", {"test_accuracy": 0.5, "best_val_accuracy": 0.5})
    stopped = _finished_copy(store, tiny_store, summary, "stopped", {"test_accuracy": 0.9, "best_val_accuracy": 0.9})
    _finished_copy(store, tiny_store, summary, "failed", {})
    chance = _finished_copy(store, tiny_store, summary, "completed", {"test_accuracy": 0.1, "best_val_accuracy": 0.1})
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "none"))
    choices = model_choices(store)
    assert [c.run_id for c in choices] == [good.id, chance.id, stopped.id]  # then newest first
    assert "did not learn" in choices[1].label and "(stopped)" in choices[2].label

    shipped = tmp_path / "default"
    shipped.mkdir()
    shutil.copy(good.model_path, shipped / "model.keras")
    (shipped / "evaluation.json").write_text('{"accuracy": 0.8}')
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    choices = model_choices(store)
    assert choices[0].key == "default" and choices[0].label == "shipped default model · test acc 80.0%"
    assert pick(choices, good.id).run_id == good.id
    assert pick(choices, "deleted-run").key == "default"


def test_figures_mark_the_phase_boundary_and_export_png():
    epochs = pd.DataFrame({"phase": ["head", "head", "finetune"], "epoch": [1, 2, 3], "step": [1, 2, 3],
                           "loss": [2.0, 1.5, 1.0], "val_loss": [2.1, 1.7, 1.2],
                           "accuracy": [0.3, 0.5, 0.7], "val_accuracy": [0.3, 0.4, 0.6]})
    assert plots.phase_boundary(epochs, "epoch") == 2.5
    fig = plots.curves_figure(epochs)
    assert any(shape.x0 == 2.5 for shape in fig.layout.shapes)
    assert plots.curves_png(epochs).startswith(b"\x89PNG")
    cm = np.eye(3, dtype=int) * 3
    names = ("ant", "bee", "wasp")
    assert plots.confusion_png(cm, names).startswith(b"\x89PNG")
    figure = plots.confusion_figure(cm, names)
    assert not math.isnan(figure.data[0].z[0][0]) and list(figure.data[0].x) == list(names)


def test_chance_level_is_two_points_around_one_in_the_class_count():
    from cifar_core.runs.outcome import did_not_learn

    assert did_not_learn(0.10, 10) and did_not_learn(0.119, 10)
    assert not did_not_learn(0.13, 10) and not did_not_learn(None, 10)
    assert did_not_learn(0.21, 5) and not did_not_learn(0.23, 5)  # chance is 20% for five classes
