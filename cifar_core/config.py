"""TrainConfig: every setting of a training run, validated in one place.

The CLI builds it from flags, the dashboard from its form; both call
`TrainConfig.validate()` (or `from_dict`) and show the per-field messages of
`ConfigError` to the user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ARCHS = ("vgg16", "vgg16_bn")
HEADS = ("flatten", "gap")
CUTS = ("block5_pool", "block4_pool", "block3_pool")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "plateau")
STRATEGIES = ("default", "mirrored", "multiworker")
BLOCK_NAMES = ("block1", "block2", "block3", "block4", "block5")
# Largest side the pipeline accepts: 224 is VGG16's ImageNet size; beyond it
# the 32x32 CIFAR images only get blurrier and slower.
MAX_INPUT_SIZE = 224


class ConfigError(ValueError):
    """Raised with one message per invalid field (`errors` maps field -> message)."""

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class TrainConfig:
    """Settings of one training run. Defaults follow the seed notebook at 32x32."""

    data_dir: str | None = None
    weights: str = "imagenet"  # "imagenet", "none", or a path to a weights file
    arch: str = "vgg16"
    width: float = 1.0  # conv width multiplier of vgg16_bn (1.0 = VGG16's 64..512 filters)
    input_size: int = 32
    cut: str = "block5_pool"
    head: str = "flatten"
    head_units: tuple[int, ...] = (512, 256)
    dropout: float = 0.5
    # Phase 1 trains the head on a frozen base; phase 2 unfreezes `finetune_freeze`.
    epochs_head: int = 15
    epochs_finetune: int = 20
    lr: float = 1e-4
    finetune_lr: float = 1e-5
    # "block5" = train block5 and above; an integer N = freeze the first N base layers
    # (the seed froze 18, then 14); "none" = train everything.
    finetune_freeze: str = "block5"
    optimizer: str = "rmsprop"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: int = 0
    label_smoothing: float = 0.0
    batch_size: int = 64
    augment: bool = True
    patience: int = 5  # EarlyStopping patience in epochs; 0 turns it off
    bf16: bool = False
    val_fraction: float = 0.1
    limit: int | None = None  # training images per class, for quick runs
    seed: int = 42
    feature_cache: bool = True
    skip_bad: bool = False
    strategy: str = "default"

    def validate(self) -> "TrainConfig":
        """Return self if every field is valid, else raise ConfigError naming each bad one."""
        errors: dict[str, str] = {}

        def check(name: str, ok: bool, message: str) -> None:
            if not ok and name not in errors:
                errors[name] = message

        check("arch", self.arch in ARCHS, f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        weights_ok = self.weights in ("imagenet", "none") or Path(self.weights).is_file()
        check(
            "weights",
            weights_ok,
            f"{self.weights!r} is neither 'imagenet', 'none' nor an existing weights file",
        )
        if self.arch == "vgg16_bn":
            check(
                "weights",
                self.weights != "imagenet",
                "vgg16_bn has no ImageNet weights in keras.applications; use 'none' "
                "(train from scratch) or a weights file saved from a vgg16_bn run",
            )
        check(
            "width",
            isinstance(self.width, (int, float)) and 0.125 <= self.width <= 2.0 and (self.arch == "vgg16_bn" or self.width == 1.0),
            f"must be in [0.125, 2] and may differ from 1 only for vgg16_bn, got {self.width!r}",
        )
        check(
            "input_size",
            isinstance(self.input_size, int) and 32 <= self.input_size <= MAX_INPUT_SIZE,
            f"must be a whole number from 32 to {MAX_INPUT_SIZE}, got {self.input_size!r}",
        )
        check("cut", self.cut in CUTS, f"unknown cut {self.cut!r}; choose one of {', '.join(CUTS)}")
        check("head", self.head in HEADS, f"unknown head {self.head!r}; choose one of {', '.join(HEADS)}")
        check(
            "head_units",
            len(self.head_units) > 0 and all(isinstance(u, int) and 1 <= u <= 8192 for u in self.head_units),
            f"must be one or more layer widths from 1 to 8192, got {self.head_units!r}",
        )
        check("dropout", _number(self.dropout) and 0.0 <= self.dropout < 1.0, f"must be in [0, 1), got {self.dropout!r}")
        for name in ("epochs_head", "epochs_finetune"):
            value = getattr(self, name)
            check(name, isinstance(value, int) and 0 <= value <= 1000, f"must be a whole number from 0 to 1000, got {value!r}")
        if "epochs_head" not in errors and "epochs_finetune" not in errors:
            check("epochs_head", self.epochs_head + self.epochs_finetune > 0, "both phases have 0 epochs: nothing to train")
        for name in ("lr", "finetune_lr"):
            value = getattr(self, name)
            check(name, isinstance(value, (int, float)) and 0 < value <= 10, f"must be a number in (0, 10], got {value!r}")
        check("finetune_freeze", _valid_freeze(self.finetune_freeze), "must be 'none', 'all', a block name (block1..block5) or a layer count >= 0")
        check("optimizer", self.optimizer in OPTIMIZERS, f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        check("momentum", _number(self.momentum) and 0.0 <= self.momentum < 1.0, f"must be in [0, 1), got {self.momentum!r}")
        check("weight_decay", _number(self.weight_decay) and 0.0 <= self.weight_decay < 1.0, f"must be in [0, 1), got {self.weight_decay!r}")
        check("schedule", self.schedule in SCHEDULES, f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        check("warmup_epochs", isinstance(self.warmup_epochs, int) and self.warmup_epochs >= 0, f"must be a whole number >= 0, got {self.warmup_epochs!r}")
        check("label_smoothing", _number(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0, f"must be in [0, 1), got {self.label_smoothing!r}")
        check("batch_size", isinstance(self.batch_size, int) and 1 <= self.batch_size <= 4096, f"must be a whole number from 1 to 4096, got {self.batch_size!r}")
        check("patience", isinstance(self.patience, int) and self.patience >= 0, f"must be a whole number >= 0, got {self.patience!r}")
        check("val_fraction", _number(self.val_fraction) and 0.0 < self.val_fraction < 0.5, f"must be in (0, 0.5), got {self.val_fraction!r}")
        check("limit", self.limit is None or (isinstance(self.limit, int) and self.limit >= 2), f"must be empty or a whole number >= 2, got {self.limit!r}")
        # numpy's (hence Keras') seeds are 32-bit: a larger one fails only when training starts.
        check("seed", isinstance(self.seed, int) and 0 <= self.seed < 2**32, f"must be a whole number from 0 to {2**32 - 1}, got {self.seed!r}")
        check("strategy", self.strategy in STRATEGIES, f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if self.data_dir is not None:
            check("data_dir", Path(self.data_dir).is_dir(), f"data folder {self.data_dir!r} does not exist")
        if errors:
            raise ConfigError(errors)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["head_units"] = list(self.head_units)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build and validate a config; unknown keys are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError({k: "unknown setting" for k in unknown})
        d = dict(d)
        if "head_units" in d:
            d["head_units"] = tuple(d["head_units"])
        return cls(**d).validate()

    def resolved_data_dir(self) -> str | None:
        """The data folder to use: the config's, else $CIFAR10_DIR, else None (Keras download)."""
        return self.data_dir or os.environ.get("CIFAR10_DIR") or None


def _number(value: Any) -> bool:
    """True for real numbers; from_dict may carry strings or None from a form or an edited config.json."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid_freeze(spec: str) -> bool:
    spec = str(spec)
    # ASCII digits only: '²'.isdigit() is true, yet int('²') fails.
    return spec in ("none", "all") or spec in BLOCK_NAMES or re.fullmatch(r"[0-9]+", spec) is not None


def parse_number(text: Any, kind: type) -> int | float:
    """`text` (typed in a form or on the command line) as an int or a float; ValueError in words.

    ASCII only: Python's int() and float() also read other scripts' digits
    ('٣' is 3) yet fail on others ('²'), which no user means as a number.
    """
    raw = str(text).strip()
    if raw.isascii():
        with contextlib.suppress(ValueError):
            return kind(raw)
    raise ValueError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}")


# One line of help per setting, shown by the CLI (--help) and the dashboard's form.
FIELD_HELP: dict[str, str] = {
    "data_dir": "CIFAR-10 folder (image folders, Kaggle layout or python batches); default $CIFAR10_DIR, else Keras' download",
    "weights": "'imagenet' (Keras download), 'none' (random init, from scratch) or a path to a base weights file",
    "arch": "vgg16 (keras.applications) or vgg16_bn (same layout with BatchNorm, for training from scratch)",
    "width": "conv width multiplier for vgg16_bn (0.5 = half of VGG16's filters, ~4x less compute); vgg16 is always 1",
    "input_size": "side of the network input; 32 is native CIFAR-10, larger sizes upsample (slow on a CPU)",
    "cut": "last base layer kept: block5_pool (whole base), block4_pool or block3_pool (the seed's partial network)",
    "head": "flatten (the seed's head) or gap (global average pooling)",
    "head_units": "widths of the dense layers of the head",
    "dropout": "dropout after each dense layer of the head",
    "epochs_head": "phase 1: epochs training the head on a frozen base (0 skips it)",
    "epochs_finetune": "phase 2: epochs fine-tuning after unfreezing (0 skips it)",
    "lr": "phase 1 learning rate",
    "finetune_lr": "phase 2 learning rate (lower, to keep pretrained features)",
    "finetune_freeze": "phase 2 freezing: blockN (train blockN and up), N (freeze the first N base layers), none, or all",
    "optimizer": "rmsprop (the seed's), adam, or sgd (Nesterov momentum)",
    "momentum": "SGD momentum",
    "weight_decay": "decoupled weight decay (0 = off)",
    "schedule": "learning-rate schedule: constant, cosine (with optional warmup) or plateau (halve on a val_loss plateau)",
    "warmup_epochs": "linear warmup epochs for the cosine schedule",
    "label_smoothing": "label smoothing of the cross-entropy loss",
    "batch_size": "global batch size",
    "augment": "random horizontal flips and shifts of up to 4 pixels during training",
    "patience": "EarlyStopping patience in epochs on val_accuracy, restoring the best weights (0 = off)",
    "bf16": "mixed_bfloat16 precision (faster on CPUs with AVX-512 BF16 and on recent GPUs)",
    "val_fraction": "fraction of the training images held out (stratified) for validation",
    "limit": "use only the first N training images per class (quick runs)",
    "seed": "random seed: same seed and data, same run",
    "feature_cache": "train the frozen-phase head on cached base features (when augmentation is off)",
    "skip_bad": "skip unreadable image files (their count is reported) instead of failing",
    "strategy": "tf.distribute strategy: default, mirrored (all local GPUs) or multiworker (TF_CONFIG)",
}
