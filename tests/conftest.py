"""Shared fixtures: tiny synthetic CIFAR-10 datasets in every layout, and isolated artifacts folders.

The synthetic images are learnable (each class has its own colour and stripe
direction) so that a tiny model beats chance and tests can assert on accuracy.
"""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES

# Read once at import: the autouse fixture below removes CIFAR10_DIR from each test's environment.
SHARED_DATA = Path(os.environ.get("CIFAR10_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10")


def synthetic_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N,32,32,3), labels (N,)) with a class-specific colour and stripe pattern plus noise."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    yy, xx = np.mgrid[0:32, 0:32]
    for c in range(len(CLASS_NAMES)):
        colour = np.array([(c * 37) % 256, (c * 91 + 60) % 256, (c * 53 + 120) % 256], dtype=np.float64)
        stripes = ((xx if c % 2 else yy) // (2 + c % 4)) % 2
        for _ in range(n_per_class):
            img = colour * (0.6 + 0.4 * stripes[..., None]) + rng.normal(0, 12, (32, 32, 3))
            xs.append(np.clip(img, 0, 255).astype(np.uint8))
            ys.append(c)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def write_folders(root: Path, n_train: int = 12, n_test: int = 4, seed: int = 0, suffix: str = ".png") -> Path:
    for split, n, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        x, y = synthetic_images(n, s)
        for i, (img, label) in enumerate(zip(x, y)):
            d = root / split / CLASS_NAMES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:04d}{suffix}")
    return root


def write_kaggle(root: Path, n_train: int = 12, seed: int = 0) -> Path:
    x, y = synthetic_images(n_train, seed)
    (root / "train").mkdir(parents=True)
    with open(root / "trainLabels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        for i, (img, label) in enumerate(zip(x, y), start=1):
            Image.fromarray(img).save(root / "train" / f"{i}.png")
            w.writerow([i, CLASS_NAMES[label]])
    return root


def write_batches(root: Path, n_per_class: int = 5, seed: int = 0) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        x, y = synthetic_images(n_per_class, seed + k)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"labels": y.tolist()}, f)
    return root


@pytest.fixture(autouse=True)
def isolated_artifacts(tmp_path, monkeypatch):
    """Every test gets its own artifacts folder and no CIFAR10_DIR unless it asks for one."""
    art = tmp_path / "artifacts"
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(art))
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    return art


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Image-folder layout: 12 train + 4 test images per class."""
    return write_folders(tmp_path_factory.mktemp("tiny_cifar"))


def tiny_config(data_dir: Path, **overrides):
    """A fast config: random-init VGG16-BN cut at block3 with a small GAP head (BN makes it learn in a few epochs)."""
    from cifar_core.config import TrainConfig

    values = dict(
        data_dir=str(data_dir), weights="none", arch="vgg16_bn", cut="block3_pool", head="gap", head_units=(32,),
        dropout=0.0, epochs_head=2, epochs_finetune=2, batch_size=16, lr=1e-2, finetune_lr=1e-3,
        optimizer="adam", augment=False, patience=0, val_fraction=0.2, seed=1,
    )
    values.update(overrides)
    return TrainConfig(**values).validate()


def trained_run(root: Path, data_dir: Path):
    """Train `tiny_config(data_dir)` into a run store at `root`: (store, summary)."""
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    store = RunStore(root)
    # Session fixtures run before the autouse `isolated_artifacts`, so point the
    # data and feature caches at this run's folder rather than the project's artifacts/.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_ARTIFACTS", str(root))
        summary = train(tiny_config(data_dir), store=store)
    return store, summary


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_data):
    """A completed tiny run in its own artifacts folder: (store, summary)."""
    return trained_run(tmp_path_factory.mktemp("tiny_run_artifacts"), tiny_data)


@pytest.fixture
def shared_data() -> Path:
    """The real JPEG CIFAR-10 beside the project; tests using it are skipped where it is absent."""
    if not (SHARED_DATA / "train").is_dir():
        pytest.skip(f"real CIFAR-10 folder not found at {SHARED_DATA}")
    return SHARED_DATA


NOISY_FLIPS = 8  # test images filed under a wrong class
NOISY_LEAKS = 3  # test images also copied into the training set


@pytest.fixture(scope="session")
def noisy_data(tmp_path_factory) -> dict:
    """Image folders with 10 test images per class, of which NOISY_FLIPS carry a wrong label and
    NOISY_LEAKS are also training images: what error analysis should surface. Returns the folder and
    the (class, file name) of the flipped and the leaked test images."""
    import shutil

    root = write_folders(tmp_path_factory.mktemp("noisy_cifar"), n_train=12, n_test=10, seed=3)
    test_files = sorted((root / "test").glob("*/*.png"))
    picks = np.random.default_rng(0).choice(len(test_files), NOISY_FLIPS + NOISY_LEAKS, replace=False)
    flipped, leaked = [], []
    for k, i in enumerate(picks[:NOISY_FLIPS]):
        src = test_files[i]
        wrong = CLASS_NAMES[(CLASS_NAMES.index(src.parent.name) + 1 + k % 9) % len(CLASS_NAMES)]
        dest = root / "test" / wrong / f"flipped_{src.name}"
        shutil.move(src, dest)
        flipped.append(dest)
    for i in picks[NOISY_FLIPS:]:
        src = test_files[i]
        shutil.copy(src, root / "train" / src.parent.name / f"leaked_{src.name}")
        leaked.append(src)
    return {"root": root, "flipped": flipped, "leaked": leaked}


@pytest.fixture(scope="session")
def noisy_run(tmp_path_factory, noisy_data):
    """A completed tiny run on `noisy_data`, in its own artifacts folder: (store, summary)."""
    return trained_run(tmp_path_factory.mktemp("noisy_run_artifacts"), noisy_data["root"])


# Fixtures that train a model or read the real dataset: a test using one belongs to the slow lane
# (`pytest -m "not slow"` is the fast lane; the README's test command runs both).
SLOW_FIXTURES = {"tiny_run", "noisy_run", "subset_run", "shared_data"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
