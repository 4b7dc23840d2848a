"""Models and runs saved before the engine moved into subpackages (issue 23) keep working.

`snapshots/old_run/` is an artifacts folder written by the code before the move (commit 20af766,
when the optimizers lived in `cifar_core/optimizer.py`): its runs.db and one run folder, without its
TensorBoard logs. The run was made with that commit's `cifar_core.train.train` on
`conftest.write_folders(<folder>)` (the images of the `tiny_data` fixture) with
TrainConfig(weights="none", arch="vgg16_bn", width=0.125, cut="block3_pool", head="gap", head_units=(16,),
dropout=0.0, epochs_head=0, epochs_finetune=2, batch_size=16, finetune_lr=0.05, optimizer="sgd",
bn_bias_lr=2.0, schedule="onecycle", warmup_epochs=1, augment=False, patience=0, val_fraction=0.2, seed=1),
and a stop requested at the end of its first epoch: it is 'stopped', with one epoch's backup to resume from.
Its model.keras names the optimizer and schedule as registered Keras objects ("cifar_core>BatchNormBiasSGD",
"cifar_core>OneCycle") under their old module, "cifar_core.optimizer".
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import synthetic_images
from PIL import Image

from cifar_core.cli import main as cli
from cifar_core.model.vgg import load_model
from cifar_core.predict.inference import Classifier
from cifar_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "artifacts" / "default"
OLD_RUN = Path(__file__).resolve().parent / "snapshots" / "old_run"
OLD_RUN_ID = "20261207-172112-0d66"


def keras_config(model_path: Path) -> str:
    with zipfile.ZipFile(model_path) as z:
        return z.read("config.json").decode()


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_shipped_model_loads_with_its_classes_and_temperature_and_predicts_an_image():
    classifier = Classifier(SHIPPED / "model.keras")
    classes = json.loads((SHIPPED / "classes.json").read_text())
    stored = json.loads((SHIPPED / "calibration.json").read_text())
    assert list(classifier.class_names) == classes["class_names"]
    assert classifier.tta is True  # its config.json says it was trained for test-time augmentation
    assert classifier.temperature == pytest.approx(stored["temperature"])

    image = synthetic_images(1, seed=0)[0][0]
    (prediction,) = classifier.classify_bytes([("one.png", png(image))], top_k=3)
    assert prediction.error is None
    assert prediction.probs.shape == (len(classifier.class_names),) and prediction.probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert [t["label"] for t in prediction.top] == [classifier.class_names[i] for i in np.argsort(-prediction.probs)[:3]]


def test_an_old_checkpoint_names_registered_objects_that_still_resolve():
    model_path = OLD_RUN / "runs" / OLD_RUN_ID / "model.keras"
    text = keras_config(model_path)
    names = set(re.findall(r'"registered_name": "(cifar_core>[^"]+)"', text))
    assert names == {"cifar_core>BatchNormBiasSGD", "cifar_core>OneCycle"}
    assert '"module": "cifar_core.optimizer"' in text  # the module path from before the move

    model = load_model(model_path)  # the engine's loader registers the studio's objects itself
    assert model.output_shape == (None, 10)
    for name in names:
        assert keras.saving.get_registered_object(name) is not None, name
    # Compiling it back, as Keras would for a resumed fit, rebuilds the optimizer and its schedule by those names.
    stored = json.loads(text)["compile_config"]["optimizer"]
    schedule = keras.saving.deserialize_keras_object(stored["config"]["learning_rate"])
    optimizer = keras.saving.deserialize_keras_object(stored)  # (this one replaces the schedule's config in place)
    assert type(optimizer).__name__ == "BatchNormBiasSGD" and optimizer.bn_bias_lr == 2.0
    assert type(schedule).__name__ == "OneCycle" and schedule.get_config() == {"peak": 0.05, "warmup_steps": 7, "total_steps": 14}


@pytest.mark.slow
def test_a_run_saved_before_the_move_resumes_for_its_last_epoch(tiny_data, isolated_artifacts, capsys):
    shutil.copytree(OLD_RUN, isolated_artifacts)
    # The run read its images from a temporary folder of the machine that made it; `tiny_data` holds the same images.
    with sqlite3.connect(isolated_artifacts / "runs.db") as db:
        db.execute("UPDATE runs SET config=json_set(config, '$.data_dir', ?) WHERE id=?", (str(tiny_data), OLD_RUN_ID))
    run_dir = isolated_artifacts / "runs" / OLD_RUN_ID
    config = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps({**config, "data_dir": str(tiny_data)}, indent=2, sort_keys=True))

    store = RunStore(isolated_artifacts)
    before = store.get(OLD_RUN_ID)
    assert before.status == "stopped" and before.health() is None and before.summary["epochs_completed"] == 1
    first_epoch = store.metrics(OLD_RUN_ID)

    assert cli.main(["train", "--resume", OLD_RUN_ID]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["run_id"] == OLD_RUN_ID and result["status"] == "completed"
    assert result["epochs_completed"] == 2 and result["phase_epochs"] == {"finetune": 2}

    after = store.get(OLD_RUN_ID)
    assert after.status == "completed" and after.health() is None
    metrics = store.metrics(OLD_RUN_ID)
    assert metrics["epoch"].tolist() == [1, 2]
    # Continued from the old epoch's backup, not trained again from the start: epoch 1's record is the old one.
    assert metrics["ts"].iloc[0] == first_epoch["ts"].iloc[0]
    assert load_model(after.model_path).output_shape == (None, 10)
