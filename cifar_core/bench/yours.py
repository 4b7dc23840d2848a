"""`python -m cifar_core bench yours`: the "Your images" preset against from-scratch and head-only training.

Two small datasets are written, in the image-folder layout (train/<class>/*.png and
test/<class>/*.png), into a temporary folder, from data available offline:

  cifar5   five CIFAR-10 classes (the first five: airplane .. deer), 50 training images per
           class (a seeded sample) and all of those classes' test images (1,000 each). In
           domain: the shipped model learned from all of CIFAR-10's training images.
  digits   scikit-learn's bundled handwritten digits (8x8 grey, 10 classes, 1,797 images),
           upscaled to 32x32 RGB, with a stratified, seeded 20% test split. Another domain.

On each, three runs with the preset's settings (start_choice.YOURS): the preset itself
(trials, then the chosen start trained in full), its "from scratch" candidate and its
"head only" candidate, each trained directly. Each run carves its validation split from
the training images (20%, seeded: the same split for all three). The wall time of a run
is its `train` call; the datasets are decoded once before, so no run pays for that.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from PIL import Image

from cifar_core.training import start_choice

CIFAR5_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
CIFAR5_TRAIN_PER_CLASS = 50
DIGITS_TEST_FRACTION = 0.2
SEED = 0
VARIANTS = ("preset", "from scratch", "head only")
# --quick: a handful of images and one epoch per phase, to check every run works end to end (tests).
QUICK: dict[str, Any] = dict(epochs_head=1, epochs_finetune=1, batch_size=16)
QUICK_TRAIN_PER_CLASS, QUICK_TEST_PER_CLASS = 10, 4


def write_folders(root: Path, splits: dict[str, tuple[np.ndarray, np.ndarray]], class_names: tuple[str, ...]) -> Path:
    """Write uint8 RGB images as root/<split>/<class>/<n>.png; returns root."""
    for split, (x, y) in splits.items():
        for n, (image, label) in enumerate(zip(x, y)):
            folder = root / split / class_names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{n:05d}.png")
    return root


def cifar5(data_dir: str, root: Path, quick: bool) -> Path:
    """The five-class CIFAR-10 subset, from `data_dir` (any layout the studio reads)."""
    from cifar_core.data.loader import load_dataset, select_classes

    per_class = QUICK_TRAIN_PER_CLASS if quick else CIFAR5_TRAIN_PER_CLASS
    # --quick decodes only the first images of each class (the full run reads the decode cache, if any).
    data = select_classes(load_dataset(data_dir, limit=per_class if quick else None), CIFAR5_CLASSES)
    rng = np.random.default_rng(SEED)
    train = np.concatenate([rng.choice(np.flatnonzero(data.y_train == c), per_class, replace=False) for c in range(len(CIFAR5_CLASSES))])
    test = (np.concatenate([np.flatnonzero(data.y_test == c)[:QUICK_TEST_PER_CLASS] for c in range(len(CIFAR5_CLASSES))])
            if quick else np.arange(len(data.y_test)))
    return write_folders(root, {"train": (data.x_train[train], data.y_train[train]), "test": (data.x_test[test], data.y_test[test])},
                         CIFAR5_CLASSES)


def digits(root: Path, quick: bool) -> Path:
    """scikit-learn's digits, 8x8 grey (0-16) upscaled to 32x32 RGB, with a stratified seeded test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    grey = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")) for g in grey])
    x_train, x_test, y_train, y_test = train_test_split(x, bunch.target, test_size=DIGITS_TEST_FRACTION, stratify=bunch.target,
                                                        random_state=SEED)
    if quick:
        train = np.concatenate([np.flatnonzero(y_train == c)[:QUICK_TRAIN_PER_CLASS] for c in range(10)])
        test = np.concatenate([np.flatnonzero(y_test == c)[:QUICK_TEST_PER_CLASS] for c in range(10)])
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_test[test], y_test[test]
    return write_folders(root, {"train": (x_train, y_train), "test": (x_test, y_test)}, tuple(str(d) for d in range(10)))


def variant_config(name: str, data_dir: Path, quick: bool):
    """The run of one variant: the preset as is, or one of its candidates trained directly."""
    from cifar_core.config import TrainConfig

    config = TrainConfig(**{**start_choice.yours(), "data_dir": str(data_dir), **(QUICK if quick else {})}).validate()
    if name == "preset":
        return config
    return start_choice.settings(config, start_choice.candidates(config)[name]).validate()


def run_yours(data_dir: str | None, quick: bool = False, echo: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Build both datasets, train every variant on each; yields one row per (dataset, variant) as it finishes."""
    from cifar_core.data.loader import data_cache_folder, load_dataset
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    with tempfile.TemporaryDirectory(prefix="cifar-yours-") as tmp:
        store = RunStore(Path(tmp) / "artifacts")
        built = {"cifar5": lambda: cifar5(data_dir, Path(tmp) / "cifar5", quick), "digits": lambda: digits(Path(tmp) / "digits", quick)}
        for dataset, build in built.items():
            folder = build()
            load_dataset(str(folder))  # decoded and cached once, before any run is timed
            try:
                for variant in VARIANTS:
                    config = variant_config(variant, folder, quick)
                    if echo:
                        echo(f"bench yours: {dataset}, {variant}")
                    began = time.time()
                    summary = train(config, store=store)
                    choice = summary.get("start_choice")
                    yield {
                        "dataset": dataset, "variant": variant, "test_accuracy": summary["test_accuracy"],
                        "seconds": round(time.time() - began, 1), "val_accuracy": summary["val_accuracy"],
                        "classes": len(summary["class_names"]), "train_images": summary["train_images"],
                        "val_images": summary["val_images"], "test_images": summary["test_images"],
                        "epochs": {"head": config.epochs_head, "finetune": config.epochs_finetune},
                        "weights": "shipped model" if config.weights.endswith(".keras") else config.weights,
                        "chosen": choice and choice["chosen"], "trials": choice and choice["trials"],
                        "settings": {k: v for k, v in dataclasses.asdict(config).items() if k in ("lr", "finetune_lr", "finetune_freeze")},
                    }
            finally:  # the decode cache lives in the studio's artifacts folder: leave nothing of this temp dataset there
                shutil.rmtree(data_cache_folder(str(folder)), ignore_errors=True)
