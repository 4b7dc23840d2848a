"""The dashboard's engine helpers: form parsing, filtering, live progress, model choices, figures."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pandas as pd
import pytest

from cifar_core import plots, studio
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.evaluate import Interpretation
from cifar_core.runs import Run, RunStore


def test_config_from_form_parses_text_and_reports_each_bad_field():
    values = {**studio.form_defaults(), "head_units": "128, 64", "limit": "", "lr": "3e-4", "epochs_head": 2}
    config = studio.config_from_form(values)
    assert config.head_units == (128, 64) and config.limit is None and config.lr == 3e-4 and config.epochs_head == 2
    with pytest.raises(ConfigError) as err:
        studio.config_from_form({**values, "lr": "fast", "dropout": "1.5", "head_units": "wide"})
    assert set(err.value.errors) == {"lr", "dropout", "head_units"}


def test_form_text_round_trips_every_default():
    defaults = studio.form_defaults(list(studio.PRESETS)[1])
    texts = {k: v if isinstance(v, bool) else studio.form_text(v) for k, v in defaults.items()}
    assert studio.config_from_form(texts).to_dict() == {**defaults, "data_dir": None}


def test_filter_predictions_filters_and_sorts():
    probs = np.array([[0.9, 0.1] + [0] * 8, [0.2, 0.8] + [0] * 8, [0.6, 0.4] + [0] * 8], dtype=np.float32)
    table = Interpretation(probs, np.array([0, 0, 1])).table()
    wrong = studio.filter_predictions(table, correct=False)
    assert list(wrong.index) == [1, 2]
    by_loss = studio.filter_predictions(table, sort_by="loss", descending=True)
    assert list(by_loss.index) == [1, 2, 0]
    assert list(studio.filter_predictions(table, true=["automobile"]).index) == [2]
    assert list(studio.filter_predictions(table, confidence=(0.85, 1.0)).index) == [0]


def test_live_progress_spans_all_planned_epochs():
    run = Run("r", "running", 0, 0, None, 1, {"epochs_head": 2, "epochs_finetune": 2, "batch_size": 10})
    batches = pd.DataFrame([{"phase": "finetune", "epoch": 3, "step": 25, "batch": 5, "steps": 10,
                             "images_per_s": 100.0, "eta_s": 1.0, "epochs": 4}])
    p = studio.live_progress(run, batches)
    assert p.fraction == pytest.approx(25 / 40)
    assert p.eta_s == pytest.approx(15 / 10)  # 15 batches left at 10 batches/s
    assert "finetune phase · epoch 3/4 · batch 5/10" in p.describe()
    assert studio.live_progress(run, pd.DataFrame(columns=["phase", "epoch", "step", "ts"])) is None


def test_model_choices_list_completed_runs_then_the_shipped_model_then_stopped_runs(tiny_run, tmp_path, monkeypatch):
    tiny_store, summary = tiny_run
    store = RunStore(tmp_path / "artifacts")
    completed = store.create(TrainConfig.from_dict(tiny_store.get(summary["run_id"]).config), exclusive=False)
    stopped = store.create(TrainConfig.from_dict(completed.config), exclusive=False)
    unfinished = store.create(TrainConfig.from_dict(completed.config), exclusive=False)
    for run in (completed, stopped, unfinished):
        shutil.copy(tiny_store.get(summary["run_id"]).model_path, run.model_path)
    store.finish(completed.id, "completed", summary={"test_accuracy": 0.5})
    store.finish(stopped.id, "stopped", summary={"test_accuracy": 0.25})
    store.finish(unfinished.id, "failed", error="killed")
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "none"))
    assert [c.run_id for c in studio.model_choices(store)] == [completed.id, stopped.id]

    shipped = tmp_path / "default"
    shipped.mkdir()
    shutil.copy(completed.model_path, shipped / "model.keras")
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    choices = studio.model_choices(store)
    assert [c.run_id for c in choices] == [completed.id, None, stopped.id]
    assert choices[1].label.startswith("shipped default model")
    assert choices[2].label == f"run {stopped.id} (stopped) · test acc 25.0%"


def test_figures_mark_the_phase_boundary_and_export_png():
    epochs = pd.DataFrame({"phase": ["head", "head", "finetune"], "epoch": [1, 2, 3], "step": [1, 2, 3],
                           "loss": [2.0, 1.5, 1.0], "val_loss": [2.1, 1.7, 1.2],
                           "accuracy": [0.3, 0.5, 0.7], "val_accuracy": [0.3, 0.4, 0.6]})
    assert plots.phase_boundary(epochs, "epoch") == 2.5
    fig = plots.curves_figure(epochs)
    assert any(shape.x0 == 2.5 for shape in fig.layout.shapes)
    assert plots.curves_png(epochs).startswith(b"\x89PNG")
    cm = np.eye(10, dtype=int) * 3
    assert plots.confusion_png(cm).startswith(b"\x89PNG")
    assert not math.isnan(plots.confusion_figure(cm).data[0].z[0][0])
