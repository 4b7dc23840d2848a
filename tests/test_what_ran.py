"""Issue 24's truths about runs and datasets: a run is described by what ran (the start the "Your images" preset
chose), a run stopped during its trials is not "broken", accuracies come with their 95% interval and show as
measured, a dataset keeps its own class order, and the formats named in messages are the ones accepted."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.base.intervals import accuracy_interval, half_width, interval_text, wilson
from cifar_core.config import TrainConfig
from cifar_core.runs import outcome
from cifar_core.runs.model_choice import model_choices
from cifar_core.runs.store import RunStore
from cifar_core.training import start_choice

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the 95% interval


def test_wilson_interval_matches_published_values():
    # 27 of 30 and 8,885 of 10,000: Wilson's score interval at 95% (Newcombe 1998's method 3).
    assert wilson(27, 30) == pytest.approx((0.7438, 0.9654), abs=1e-4)
    assert wilson(8885, 10_000) == pytest.approx((0.8822, 0.8945), abs=1e-4)
    low, high = wilson(10, 10)
    assert high == pytest.approx(1.0) and low == pytest.approx(0.7225, abs=1e-4)  # never collapses to a point
    assert wilson(0, 0) is None and accuracy_interval(None, 30) is None and accuracy_interval(0.9, None) is None
    assert interval_text(0.9, 30) == "95% interval 74.4%-96.5% (30 test images)"
    assert half_width(30) > 0.15 > 0.05 > half_width(400) > 0.045


# ---------------------------------------------------------------- what ran


def measured_run(store: RunStore, chosen: str, changes: dict, **summary) -> object:
    """A completed "Your images" run (5+25 epochs as set) whose trials chose `chosen`."""
    config = TrainConfig(**{**start_choice.yours(), "data_dir": "data"})
    run = store.create(config, status="queued")
    record = {"chosen": chosen, "changes": changes, "val_images": 30,
              "trials": [{"candidate": chosen, "val_accuracy": 0.9}]}
    store.finish(run.id, "completed", summary={"start_choice": record, "epochs_completed": 30, "best_val_accuracy": 0.9,
                                               "val_accuracy": 0.8999999761581421, "test_accuracy": 0.88,
                                               "test_images": 50, **summary})
    (run.dir / "model.keras").write_bytes(b"")  # present; its contents are not read here
    return store.get(run.id)


@pytest.mark.parametrize("chosen, changes, start, epochs", [
    ("head only", {"epochs_head": 30, "epochs_finetune": 0}, "head only, measured, base of default", "30 of 30+0 epochs"),
    ("from scratch", {"weights": "none", "epochs_head": 0, "epochs_finetune": 30, "finetune_freeze": "none",
                      "finetune_lr": 0.05}, "from scratch, measured", "30 of 0+30 epochs"),
])
def test_a_measured_run_is_described_by_the_start_it_chose(chosen, changes, start, epochs, isolated_artifacts):
    store = RunStore()
    run = measured_run(store, chosen, changes)
    row = outcome.run_row(run)
    assert start in row["settings"] and epochs in row["settings"], row["settings"]
    assert "5+25" not in row["settings"]  # the preset's plan is not what ran
    ran = outcome.ran_config(run.config, run.summary)
    assert (ran["epochs_head"], ran["epochs_finetune"]) == (changes["epochs_head"], changes["epochs_finetune"])
    assert ran["weights"] == changes.get("weights", run.config["weights"]) and not ran["measure_start"]
    assert outcome.ran_config(run.config, {}) is run.config  # still measuring: its settings as stored
    # 27/30 is stored by Keras as float32: the table shows 90.0%, not a truncated 89.9%.
    assert row["val acc"] == 0.9 and row["test 95% interval"] == "76.2%–94.4% (50 images)"


def test_runs_lists_what_ran_with_the_interval(isolated_artifacts, monkeypatch, capsys):
    from cifar_core.cli.main import main

    store = RunStore()
    run = measured_run(store, "from scratch", {"weights": "none", "epochs_head": 0, "epochs_finetune": 30})
    assert main(["runs", "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert row["run_id"] == run.id and row["weights"] == "none" and row["epochs"] == "0+30"
    assert row["test_accuracy_ci95"] == pytest.approx([0.7620, 0.9438], abs=1e-4)
    assert "chose from scratch: 0+30 epochs (head + fine-tuning)" in row["start_choice"]


def test_the_record_of_the_choice_names_its_epochs_and_base():
    record = {"chosen": "fine-tune", "val_images": 30, "trials": [],
              "ran": {"start": "fine-tune", "epochs_head": 5, "epochs_finetune": 25, "weights": "/x/artifacts/default/model.keras"}}
    assert start_choice.describe(record).endswith("chose fine-tune: 5+25 epochs (head + fine-tuning) on the base of default")


# ---------------------------------------------------------------- states from facts


def test_a_run_stopped_during_its_trials_is_not_usable_never_broken(isolated_artifacts):
    """Ctrl-C in the "Your images" trials: stopped, no model.keras yet, no epoch ended."""
    store = RunStore()
    run = store.create(TrainConfig(**{**start_choice.yours(), "data_dir": "data"}), status="queued")
    store.finish(run.id, "stopped", summary={"stage": {"name": "measuring the start: trial 2/3 (fine-tune)"}})
    run = store.get(run.id)
    assert run.health() is None
    row = outcome.run_row(run)
    assert row["status"] == outcome.NOT_USABLE and "broken" not in row["problem"] and "missing" not in row["problem"]
    assert run.id not in [c.key for c in model_choices(store)]
    # A run that did finish an epoch and lost its model file is broken: that is damage.
    store.finish(run.id, "stopped", summary={"epochs_completed": 3})
    assert store.get(run.id).health() == "model.keras is missing"


# ---------------------------------------------------------------- class order


def folders(root: Path, classes: tuple[str, ...]) -> Path:
    for k, cls in enumerate(classes):
        for split in ("train", "test"):
            (root / split / cls).mkdir(parents=True)
            for i in range(2):
                pixels = np.full((32, 32, 3), (k * 20 + i * 3) % 256, np.uint8)
                pixels[k % 32] = 255
                Image.fromarray(pixels).save(root / split / cls / f"{i}.png")
    return root


DIGITS = ("zero", "one", "two", "three")


def test_a_classes_txt_gives_the_class_order(tmp_path):
    from cifar_core.data.health import check_dataset
    from cifar_core.data.loader import dataset_classes, load_dataset

    root = folders(tmp_path / "d", DIGITS)
    assert dataset_classes(str(root)) == tuple(sorted(DIGITS))  # no order given: sorted
    (root / "classes.txt").write_text("\ufeff" + "\n".join(DIGITS) + "\n\n")
    assert dataset_classes(str(root)) == DIGITS
    data = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert data.class_names == DIGITS and data.y_train.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data.x_train[2, 1, 0, 0] == 255  # "one" (k = 1) is label 1: its marked row is row 1
    assert check_dataset(root, deep=False)["classes"] == list(DIGITS)
    (root / "classes.txt").write_text("zero\none\ntwo\n")  # not these classes: ignored
    assert dataset_classes(str(root)) == tuple(sorted(DIGITS))
    assert load_dataset(str(root), cache_dir=tmp_path / "cache").class_names == tuple(sorted(DIGITS))  # a new cache entry


def test_an_imported_archive_keeps_its_classes_txt_order(tmp_path, isolated_artifacts):
    from cifar_core.data.imported import import_dataset
    from cifar_core.data.loader import dataset_classes

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("digits/classes.txt", "\n".join(DIGITS))
        for k, cls in enumerate(DIGITS):
            for i in range(5):
                image = io.BytesIO()
                Image.fromarray(np.full((8, 8, 3), k * 40 + i, np.uint8)).save(image, "PNG")
                zf.writestr(f"digits/{cls}/{i}.png", image.getvalue())
    (tmp_path / "digits.zip").write_bytes(buf.getvalue())
    report = import_dataset(tmp_path / "digits.zip", "digits", artifacts=isolated_artifacts)
    assert report["classes"] == list(DIGITS) and "not_images" not in report["skipped"]
    assert json.loads((Path(report["path"]) / "dataset.json").read_text())["classes"] == list(DIGITS)
    assert dataset_classes(report["path"]) == DIGITS


# ---------------------------------------------------------------- formats, TensorFlow's start-up lines


def test_the_formats_a_message_names_are_the_ones_the_uploader_takes():
    from cifar_core.data.image_limits import FORMATS, UPLOAD_TYPES, plain_message
    from cifar_core.data.images import to_input_image

    message = plain_message(Image.UnidentifiedImageError("cannot identify"))
    assert all(name in message for name in FORMATS) and "tif" in UPLOAD_TYPES
    assert "type=UPLOAD_TYPES" in (ROOT / "app_pages" / "classify.py").read_text()
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, "TIFF")
    assert to_input_image(buf.getvalue(), 32).shape == (32, 32, 3)  # a TIFF the uploader takes is read


def test_a_command_prints_no_tensorflow_start_up_lines(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CIFAR_ARTIFACTS": str(tmp_path), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "cifar_core", "runs"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "no runs yet"
    assert proc.stderr == "", proc.stderr  # no "cuda drivers", "cuInit", "absl::InitializeLog" lines
    # An error of the command itself still reaches stderr.
    bad = subprocess.run([sys.executable, "-m", "cifar_core", "evaluate", "--model", "no-such-run"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "absl" not in bad.stderr


def test_the_start_up_filter_keeps_every_other_line():
    from cifar_core.base.quiet_start import START_UP_LINE

    assert START_UP_LINE.match("I0000 00:00:1796667607.713221   31352 cudart_stub.cc:31] Could not find cuda drivers")
    assert START_UP_LINE.match("E0000 00:00:1.5   7 cuda_driver.cc:152] failed call to cuInit: INTERNAL: CUDA error")
    assert START_UP_LINE.match("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR")
    assert not START_UP_LINE.match("E0000 00:00:1.5   7 some.cc:1] a real error")
    assert not START_UP_LINE.match("error: --model: no such run")


def test_an_evaluation_carries_the_accuracys_interval():
    from cifar_core.predict.evaluate import Interpretation

    y = np.array([0] * 15 + [1] * 15)
    probs = np.eye(2)[y].astype(np.float32) * 0.8 + 0.1
    probs[:3] = probs[:3, ::-1]  # 3 of 30 wrong: 90%
    result = Interpretation(probs, y, ("a", "b")).to_dict()
    assert result["accuracy"] == pytest.approx(0.9) and result["accuracy_ci95"] == pytest.approx([0.7438, 0.9654], abs=1e-4)
    assert Interpretation(np.zeros((0, 2)), np.zeros(0, np.int64), ("a", "b")).to_dict()["accuracy_ci95"] is None
