"""Smoke tests on a few hundred real CIFAR-10 JPEGs from the shared folder (skipped where it is absent)."""

import shutil

import numpy as np
import pytest
from conftest import tiny_config

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.loader import describe_source, load_dataset
from cifar_core.runs.store import RunStore
from cifar_core.training.trainer import train

pytestmark = pytest.mark.slow


@pytest.fixture
def real_subset(shared_data, tmp_path):
    """The folder layout with the first 30 train and 10 test images of each class, copied from the real data."""
    root = tmp_path / "real"
    for split, n in (("train", 30), ("test", 10)):
        for name in CLASS_NAMES:
            dst = root / split / name
            dst.mkdir(parents=True)
            for f in sorted((shared_data / split / name).iterdir())[:n]:
                shutil.copy(f, dst / f.name)
    return root


def test_shared_folder_is_the_full_jpeg_cifar10(shared_data):
    info = describe_source(str(shared_data))
    assert info["ok"] and info["layout"] == "folders"
    assert info["counts"] == {"train": 50000, "test": 10000}


def test_real_images_load_with_their_class_labels(real_subset, tmp_path):
    data = load_dataset(str(real_subset), cache_dir=tmp_path / "cache")
    assert data.x_train.shape == (300, 32, 32, 3) and data.x_test.shape == (100, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(data.y_train), [30] * 10)
    assert data.x_train.reshape(300, -1).std(axis=1).min() > 5  # decoded pictures, not blank arrays
    assert not data.skipped


def test_one_epoch_run_on_real_images_with_limit(real_subset, tmp_path):
    store = RunStore(tmp_path / "store")
    summary = train(tiny_config(real_subset, limit=20, epochs_head=1, epochs_finetune=0), store=store)
    assert summary["status"] == "completed"
    assert (summary["train_images"], summary["val_images"]) == (160, 40)
    assert str(real_subset) in summary["data_source"]
    assert 0 <= summary["test_accuracy"] <= 1
    run = store.get(summary["run_id"])
    assert run.model_path.is_file() and (run.dir / "evaluation.json").is_file()


def test_evaluate_reproduces_the_shipped_models_recorded_accuracy(shared_data, capsys):
    """`evaluate --model artifacts/default` on the full test split gives the accuracy its model card records
    (with the test-time augmentation the model was trained for, when it was)."""
    import json
    from pathlib import Path

    from cifar_core.cli.main import main

    shipped = Path(__file__).resolve().parent.parent / "artifacts" / "default"
    recorded = json.loads((shipped / "evaluation.json").read_text())["accuracy"]
    assert main(["evaluate", "--model", str(shipped), "--data-dir", str(shared_data)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 10_000 and result["run_id"] is None
    assert result["accuracy"] == pytest.approx(recorded, abs=1e-4)


def test_bench_transfer_quick_on_the_real_data(shared_data, capsys):
    """`bench transfer --quick` on the shared CIFAR-10: the pre-training and the three arms complete on the real
    classes and are reported (their accuracy after a few steps means nothing; the README has the full run)."""
    import json

    from cifar_core.cli.main import main
    from cifar_core.bench.transfer import ARMS

    assert main(["bench", "transfer", "--quick", "--data-dir", str(shared_data)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["arm"] for r in rows] == ["pre-train", *ARMS]
    assert all(r["test_images"] == 5000 for r in rows)  # each run's five classes' test images
