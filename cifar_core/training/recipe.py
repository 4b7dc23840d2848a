"""The training recipes, readable in one place, and the ablation that measures each of their parts.

RECIPE trains the shipped model: VGG16's layout (2-2-3-3-3 convolutions) with
BatchNorm at half width, from scratch, with the airbench94 (Jordan, 2024) set of
tricks that fit a Keras VGG16: Nesterov SGD with a one-cycle (linear up, linear
down to 0) rate, label smoothing 0.2, "alternating" flips, 2-pixel reflect-padded
shifts and test-time augmentation. Its weight decay, 5e-3, is Keras' decoupled kind
(w -= lr * wd * w each step): about the usual coupled 5e-4 under momentum 0.9.
QUICK_TRY is the dashboard's first run.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from cifar_core.config import TrainConfig

RECIPE: dict[str, Any] = dict(
    weights="none", arch="vgg16_bn", width=0.5, cut="block5_pool", head="gap", head_units=(512,), dropout=0.2,
    epochs_head=0, epochs_finetune=24, finetune_freeze="none",
    optimizer="sgd", finetune_lr=0.2, momentum=0.9, weight_decay=5e-3, batch_size=256,
    schedule="onecycle", warmup_epochs=3, label_smoothing=0.2,
    augment=True, flip="alternating", translate=2, tta=True,
    patience=0, bf16=True, val_fraction=0.04, seed=0,
)

QUICK_TRY: dict[str, Any] = dict(
    weights="none", arch="vgg16_bn", width=0.25, cut="block5_pool", head="gap", head_units=(64,), dropout=0.0,
    epochs_head=0, epochs_finetune=5, finetune_freeze="none",
    optimizer="sgd", finetune_lr=0.1, schedule="onecycle", warmup_epochs=1, label_smoothing=0.1, batch_size=64,
    flip="alternating", translate=2, patience=0, limit=1000, val_fraction=0.1, bf16=True,
)

# The ablation: each technique of RECIPE switched off (or back to the previous recipe's
# choice), or one airbench94 technique the recipe leaves out switched on, in one short
# budget with everything else equal: quarter width, 8 epochs, all the training images.
ABLATION_BUDGET: dict[str, Any] = dict(width=0.25, epochs_finetune=8, warmup_epochs=2)
ABLATION: dict[str, dict[str, Any]] = {
    "recipe (all on)": {},
    "random flips instead of alternating": dict(flip="random"),
    "no shifts": dict(translate=0),
    "no label smoothing": dict(label_smoothing=0.0),
    "cosine schedule instead of one-cycle": dict(schedule="cosine"),
    "batch 512, learning rate x2": dict(batch_size=512, finetune_lr=0.4),
    "weight decay 5e-4 (the previous recipe's)": dict(weight_decay=5e-4),
    "+ weight EMA, momentum 0.998": dict(ema=0.998),
    "+ BatchNorm biases at 16x the rate, scales frozen at 1": dict(bn_bias_lr=16.0, bn_scale=False),
}
QUICK_ABLATION: dict[str, Any] = dict(epochs_finetune=1, warmup_epochs=0, limit=20, width=0.125, batch_size=32)


def recipe_config(data_dir: str | None, **overrides: Any) -> TrainConfig:
    """RECIPE (plus `overrides`) on `data_dir`, validated."""
    return TrainConfig(**{**RECIPE, "data_dir": data_dir, **overrides}).validate()


def run_ablation(data_dir: str | None, quick: bool = False, echo: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Train every ABLATION variant in a throwaway run store; yields one row per variant as it finishes.

    Each row has the test accuracy with and without TTA (one training gives both) and the wall time.
    """
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    budget = {**ABLATION_BUDGET, **(QUICK_ABLATION if quick else {})}
    with tempfile.TemporaryDirectory(prefix="cifar-ablation-") as tmp:
        store = RunStore(Path(tmp))
        for name, change in ABLATION.items():
            config = recipe_config(data_dir, **{**budget, **change})
            if echo:
                echo(f"ablation: {name}")
            start = time.time()
            summary = train(config, store=store)
            yield {
                "variant": name, "changes": change, "test_accuracy_tta": summary["test_accuracy"],
                "test_accuracy": summary.get("test_accuracy_no_tta"), "val_accuracy": summary["val_accuracy"],
                "seconds": round(time.time() - start, 1),
                "budget": {k: v for k, v in dataclasses.asdict(config).items() if k in budget},
            }
