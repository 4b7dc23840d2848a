"""The "Your images" preset: how much of a trained model's base to reuse, measured on the run's own data.

Starting from the shipped model (artifacts/default: a half-width VGG16-BN trained on
CIFAR-10's photos) can help on photos like CIFAR-10's and hurt elsewhere: on a dataset
from another domain a head on its frozen base reached about 50% test accuracy where
training from scratch did far better (issue 17). So a run with `measure_start` first
trains a short version of each candidate below on its training split, scores each on
its validation split (never the test split), and then trains the most accurate one in
full. The trials and the choice go to the run's summary (`start_choice`) and log.

Every setting of the preset is here, at the top.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cifar_core.base.paths import default_model_dir

if TYPE_CHECKING:
    import logging

    from cifar_core.training.callbacks import StopOnRequest
    from cifar_core.config import TrainConfig
    from cifar_core.data.splits import Splits

# The preset's settings; `weights` (the shipped model) is added by `yours()`. The base must
# be the shipped model's (vgg16_bn, width 0.5, whole base, BatchNorm scales on).
YOURS: dict[str, Any] = dict(
    arch="vgg16_bn", width=0.5, cut="block5_pool", bn_scale=True, input_size=32,
    head="gap", head_units=(256,), dropout=0.2,
    # The run's epoch budget: 30 epochs in all. As set, a 5-epoch head on the frozen base
    # then 25 epochs fine-tuning all of it at a fifth of the head's rate (the "fine-tune" candidate).
    epochs_head=5, lr=0.05, epochs_finetune=25, finetune_lr=0.01, finetune_freeze="none",
    optimizer="sgd", momentum=0.9, weight_decay=5e-4, batch_size=32,
    schedule="onecycle", warmup_epochs=2, label_smoothing=0.1,
    # No flips, and no TTA (it averages in the mirror image): a mirrored digit or letter is
    # another symbol, and this preset is for any images. Shifts of 2 pixels keep the class.
    augment=True, flip="none", translate=2, tta=False,
    # A fifth of the training images held out: the trials are compared on them.
    val_fraction=0.2, patience=0, bf16=True, seed=0, measure_start=True,
)

# From scratch, the whole budget at the rate transfer.py's scratch arm used at batch 32.
SCRATCH_LR = 0.05
# Each trial runs this share of its candidate's epochs in each phase (at least one), with the
# same schedule compressed, on at most this many training images per class.
TRIAL_SHARE = 0.25
TRIAL_IMAGES_PER_CLASS = 500


def yours() -> dict[str, Any]:
    """The preset's settings, starting from the shipped model."""
    return {**YOURS, "weights": str(default_model_dir() / "model.keras")}


def candidates(config: TrainConfig) -> dict[str, dict[str, Any]]:
    """The ways to start, as changes to `config`, in order of preference when two score the same
    (cheapest first). Each spends the run's own epoch budget (epochs_head + epochs_finetune)."""
    total = config.epochs_head + config.epochs_finetune
    found = {"head only": dict(epochs_head=total, epochs_finetune=0)}
    if config.epochs_finetune and config.finetune_freeze != "all":
        found["fine-tune"] = dict(epochs_head=config.epochs_head, epochs_finetune=config.epochs_finetune)  # the run as set
    found["from scratch"] = dict(weights="none", epochs_head=0, epochs_finetune=total, finetune_freeze="none", finetune_lr=SCRATCH_LR)
    return found


def settings(config: TrainConfig, change: dict[str, Any]) -> TrainConfig:
    """`config` with a candidate's changes, to train as an ordinary run (no further measuring)."""
    return dataclasses.replace(config, measure_start=False, **change)


def shortened(config: TrainConfig) -> TrainConfig:
    """A trial of `config`: TRIAL_SHARE of each phase's epochs, at least one where the phase runs."""
    def share(epochs: int) -> int:
        return max(1, math.ceil(epochs * TRIAL_SHARE)) if epochs else 0

    return dataclasses.replace(config, epochs_head=share(config.epochs_head), epochs_finetune=share(config.epochs_finetune))


def measure(config: TrainConfig, splits: Splits, stage: Callable[..., None], log: logging.Logger,
            stop: StopOnRequest) -> dict[str, Any]:
    """Train a trial of each candidate and score it on the validation split; the record of the choice.

    A stop request (`stop`, the run's StopOnRequest callback) ends the trials; the best one so far is
    chosen (the run then stops at once).
    """
    import keras

    from cifar_core.data import pipeline
    from cifar_core.data.splits import limit_per_class
    from cifar_core.model.vgg import batchnorm_momentum, build_model, set_freeze
    from cifar_core.training.phases import compile_phase, phases

    keep = limit_per_class(splits.y_train, TRIAL_IMAGES_PER_CLASS)
    x, y = splits.x_train[keep], splits.y_train[keep]
    num_classes = len(splits.class_names)
    steps = math.ceil(len(x) / config.batch_size)
    val = pipeline.make_dataset(splits.x_val, splits.y_val, config.batch_size, training=False, input_size=config.input_size,
                                num_classes=num_classes)

    trials: list[dict[str, Any]] = []
    options = candidates(config)
    for number, (name, change) in enumerate(options.items(), start=1):
        trial = shortened(settings(config, change))
        stage(f"measuring the start: trial {number}/{len(options)} ({name})")
        began = time.time()
        keras.utils.set_random_seed(config.seed)
        model = build_model(trial, batchnorm_momentum(steps), num_classes=num_classes)
        for phase in phases(trial):
            if stop.stopped:
                break
            set_freeze(model.get_layer("base"), phase.freeze)
            compile_phase(model, trial, phase, steps)
            stream = pipeline.training_stream(x, y, config.batch_size, flip=trial.flip if trial.augment else "none",
                                              translate=trial.translate if trial.augment else 0, input_size=trial.input_size,
                                              seed=config.seed, num_classes=num_classes)
            model.fit(stream, epochs=phase.epochs, steps_per_epoch=steps, shuffle=False, callbacks=[stop], verbose=0)
        accuracy = float(model.evaluate(val, verbose=0, return_dict=True)["accuracy"])
        trials.append({"candidate": name, "val_accuracy": round(accuracy, 4), "seconds": round(time.time() - began, 1),
                       "epochs": {"head": trial.epochs_head, "finetune": trial.epochs_finetune}, "changes": change})
        log.info("start trial %s: validation accuracy %.4f after %d+%d epoch(s) on %d training images (%.0f s)", name,
                 accuracy, trial.epochs_head, trial.epochs_finetune, len(x), trials[-1]["seconds"])
        if stop.stopped:
            break
    best = max(trials, key=lambda t: t["val_accuracy"])  # the first of equals: candidates are cheapest first
    log.info("start chosen: %s (validation accuracy %s), trained in full next", best["candidate"],
             ", ".join(f"{t['candidate']} {t['val_accuracy']:.4f}" for t in trials))
    ran = settings(config, best["changes"])  # what the run then trains: the pages describe the run by this, not the preset
    return {"chosen": best["candidate"], "changes": best["changes"], "trials": trials,
            "trial_images": len(x), "val_images": len(splits.x_val),
            "rule": f"the most accurate on the validation split after {TRIAL_SHARE:.0%} of its epochs",
            "ran": {"start": best["candidate"], "epochs_head": ran.epochs_head, "epochs_finetune": ran.epochs_finetune,
                    "weights": ran.weights}}


def describe(choice: dict[str, Any]) -> str:
    """One line for the pages and `runs`: the trials' validation accuracies and the choice (a run's summary is
    read from its store, where a damaged or hand-edited record must not break a listing)."""
    if not isinstance(choice, dict):
        return "start measured, but its record is unreadable"
    trials = [t for t in choice.get("trials") or [] if isinstance(t, dict) and isinstance(t.get("val_accuracy"), (int, float))]
    scores = ", ".join(f"{t.get('candidate')} {t['val_accuracy']:.1%}" for t in trials)
    return (f"start measured on {choice.get('val_images', '?')} validation images: {scores or 'no readable trial'}; "
            f"chose {choice.get('chosen')}{_ran_text(choice)}")


def _ran_text(choice: dict[str, Any]) -> str:
    """': 30+0 epochs on the base of default' (the chosen start's epochs and base), from the record or, in a record
    made before it held them, from the chosen changes; '' when neither says."""
    ran = choice.get("ran") if isinstance(choice.get("ran"), dict) else choice.get("changes")
    if not isinstance(ran, dict) or not all(isinstance(ran.get(k), int) for k in ("epochs_head", "epochs_finetune")):
        return ""
    weights = ran.get("weights")
    base = ("" if weights is None else ", from random weights" if weights == "none"
            else f" on the base of {Path(str(weights)).parent.name or weights}")
    return f": {ran['epochs_head']}+{ran['epochs_finetune']} epochs (head + fine-tuning){base}"
