"""The transfer-learning experiment (`python -m cifar_core bench transfer`), readable in one place.

ImageNet weights cannot be downloaded everywhere, so the transfer path is measured
with a base this studio trains itself: pre-train on five CIFAR-10 classes (all their
images), then learn the other five from 100 training images per class in three ways,
each an ordinary run a user could start (CLI or Train page):

  scratch    the same network from random weights (`--weights none`)
  head only  the pre-trained base frozen, a new head (`--weights MODEL.keras`, phase 1 only)
  transfer   the seed's two phases: that head, then fine-tuning block4 and up at a lower rate
             (`--finetune-freeze block4`)

All three see the same 500 training images (and 55 validation images) and are
scored on the five classes' 5,000 test images, without test-time augmentation.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from cifar_core.training.recipe import recipe_config

PRETRAIN_CLASSES = ("airplane", "automobile", "bird", "cat", "deer")
TARGET_CLASSES = ("dog", "frog", "horse", "ship", "truck")
# 111 images per class with a 10% validation split leave exactly 100 training images per class.
TARGET_LIMIT, TARGET_VAL_FRACTION = 111, 0.1

# Weight decay 5e-4: the recipe's value when the README's transfer table was measured.
PRETRAIN: dict[str, Any] = dict(classes=PRETRAIN_CLASSES, epochs_finetune=10, warmup_epochs=2, tta=False, weight_decay=5e-4)
TARGET: dict[str, Any] = dict(classes=TARGET_CLASSES, limit=TARGET_LIMIT, val_fraction=TARGET_VAL_FRACTION,
                              batch_size=32, warmup_epochs=2, tta=False, weight_decay=5e-4)
ARMS: dict[str, dict[str, Any]] = {
    "scratch": dict(weights="none", epochs_head=0, epochs_finetune=40, finetune_freeze="none", finetune_lr=0.05),
    "head only": dict(epochs_head=40, lr=0.05, epochs_finetune=0),
    "transfer": dict(epochs_head=20, lr=0.05, epochs_finetune=20, finetune_freeze="block4", finetune_lr=0.01),
}
# --quick: every run a few steps on a handful of images, to check the three arms run end to end (CI).
QUICK: dict[str, Any] = dict(width=0.125, batch_size=16, warmup_epochs=0)
QUICK_PRETRAIN: dict[str, Any] = dict(limit=20, epochs_finetune=1)
QUICK_TARGET: dict[str, Any] = dict(limit=11)
QUICK_EPOCHS = 1


def run_transfer(data_dir: str | None, quick: bool = False, echo: Callable[[str], None] | None = None) -> list[dict]:
    """Pre-train on PRETRAIN_CLASSES, then train each of ARMS on TARGET_CLASSES; one row per run.

    Runs go to a throwaway run store. Rows have the test accuracy on the target classes' test
    images, their count, the training images, and the wall time.
    """
    from cifar_core.runs.store import RunStore

    rows = []
    with tempfile.TemporaryDirectory(prefix="cifar-transfer-") as tmp:
        store = RunStore(Path(tmp))
        config = recipe_config(data_dir, **{**PRETRAIN, **(QUICK | QUICK_PRETRAIN if quick else {})})
        pretrained = _timed_run("pre-train", config, store, echo)
        rows.append(pretrained)
        for name, change in ARMS.items():
            if quick:
                change = {k: (QUICK_EPOCHS if k.startswith("epochs_") and v else v) for k, v in change.items()}
            weights = change.get("weights", str(Path(pretrained["run_dir"]) / "model.keras"))
            config = recipe_config(data_dir, **{**TARGET, **(QUICK | QUICK_TARGET if quick else {}), **change, "weights": weights})
            rows.append(_timed_run(name, config, store, echo))
    for row in rows:
        row.pop("run_dir")
    return rows


def _timed_run(name: str, config, store, echo: Callable[[str], None] | None) -> dict:
    from cifar_core.training.trainer import train  # TensorFlow is imported only when a run trains

    if echo:
        echo(f"transfer: {name} ({', '.join(config.classes or ())})")
    start = time.time()
    summary = train(config, store=store)
    return {
        "arm": name, "classes": list(config.classes or ()), "test_accuracy": summary["test_accuracy"],
        "test_images": summary["test_images"], "train_images": summary["train_images"], "val_images": summary["val_images"],
        "epochs": {"head": config.epochs_head, "finetune": config.epochs_finetune},
        "weights": "pre-trained base" if config.weights.endswith(".keras") else config.weights, "finetune_freeze": config.finetune_freeze, "seconds": round(time.time() - start, 1), "run_dir": summary["run_dir"],
    }
