"""How a run ended, in words: whether it learned anything, and its line in the runs table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from cifar_core.base import bounded_json
from cifar_core.base.intervals import accuracy_interval
from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.classes import ClassesError, model_class_names
from cifar_core.runs.record import Run, finished_an_epoch

# A model within this many points of chance (1 / classes) has learned nothing usable.
CHANCE_MARGIN = 0.02
SHIPPED = "shipped model"  # the shipped model's name in the runs table


def did_not_learn(val_accuracy: float | None, num_classes: int) -> bool:
    """True when the best validation accuracy is within CHANCE_MARGIN of guessing."""
    return val_accuracy is not None and val_accuracy <= 1.0 / num_classes + CHANCE_MARGIN


def class_count(run: Run) -> int:
    """How many classes a run trains on: the class list its data gave (recorded in its summary), else the
    one its settings chose, else its model's classes.json (a run from before class lists: CIFAR-10's ten)."""
    names = run.summary.get("class_names") or run.config.get("classes")
    if names:
        return len(names)
    try:
        return len(model_class_names(run.dir / "model.keras"))
    except ClassesError:  # an unusable file must not stop the runs list; using the model says why
        return len(CLASS_NAMES)


def likely_reasons(config: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """Why a run may have stayed at chance, from its settings, most likely first."""
    reasons = []
    steps = summary.get("steps_per_epoch")
    epochs = summary.get("epochs_completed") or 0
    if steps is not None and steps * max(epochs, 1) < 100:
        reasons.append(f"only {steps * max(epochs, 1)} training steps in all: use more images per class or more epochs")
    if config.get("weights") == "none" and config.get("arch") == "vgg16":
        reasons.append("plain vgg16 from scratch (no BatchNorm) rarely trains: use arch vgg16_bn")
    lr = config.get("finetune_lr") if config.get("epochs_finetune") else config.get("lr")
    if isinstance(lr, (int, float)):
        if config.get("optimizer") in ("adam", "rmsprop") and lr > 3e-3:
            reasons.append(f"learning rate {lr:g} is high for {config.get('optimizer')}: try 1e-3 or less")
        elif config.get("optimizer") == "sgd" and lr > 1.0:
            reasons.append(f"learning rate {lr:g} is high for SGD: try 0.05-0.4")
        elif lr < 1e-5:
            reasons.append(f"learning rate {lr:g} is very low")
    if config.get("limit") is not None and config["limit"] < 50:
        reasons.append(f"{config['limit']} images per class is very few")
    return reasons or ["the settings look plausible: check the training curves for a diverging loss"]


NOT_USABLE = "not usable"


def usable(run: Run) -> bool:
    """False for a run stopped or failed before its first epoch ended: its model is the untrained start."""
    return run.status not in ("stopped", "failed") or finished_an_epoch(run.summary)


def verdict(run: Run) -> str | None:
    """'not usable: ...' for a run that never finished an epoch, 'did not learn: <reasons>' for a
    finished run at chance level, else None."""
    if not usable(run):
        return (f"{NOT_USABLE}: it {run.status} before its first epoch ended, so its model holds untrained weights; "
                "resume it or start a new run")
    if run.status not in ("completed", "stopped"):
        return None
    s = run.summary
    classes = class_count(run)
    if not did_not_learn(s.get("best_val_accuracy", s.get("val_accuracy")), classes):
        return None
    return (f"did not learn (validation accuracy at chance, {1 / classes:.0%} for {classes} classes): "
            + "; ".join(likely_reasons(run.config, s)))


def run_row(run: Run) -> dict[str, Any]:
    """One line of the runs table: status ('broken', 'not usable' or 'did not learn' when so), config highlights and metrics."""
    broken = run.health() if run.status not in ("queued", "running") else None
    failed_to_learn = None if broken else verdict(run)
    s = run.summary
    status = ("broken" if broken else "unknown" if run.unknown else NOT_USABLE if not usable(run)
              else "did not learn" if failed_to_learn else run.status)
    if failed_to_learn and run.error:  # a failed run's own error says why it stopped early
        failed_to_learn += f" ({run.error})"
    test_images = test_image_count(run.dir, s) if run.dir is not None else None
    return {
        "run": run.id,
        "status": status,
        "val acc": shown_accuracy(s.get("val_accuracy") or s.get("best_val_accuracy")),
        "test acc": shown_accuracy(s.get("test_accuracy")),
        "test 95% interval": interval_cell(s.get("test_accuracy"), test_images),
        **_config_columns(ran_config(run.config, s), s.get("epochs_completed"), start_text(run.config, s)),
        # One paragraph: a table cell shows line breaks as a literal \n.
        "problem": " ".join((broken or (run.unknown and f"says {run.status}, but {run.unknown}; open it to mark it failed")
                             or failed_to_learn or run.error or "").split()),
    }


def shipped_row(config: dict[str, Any], test_accuracy: float | None, history: pd.DataFrame, folder: Path | None = None) -> dict[str, Any]:
    """The shipped model's line in the runs table, from its folder's config, evaluation and history."""
    val = history["val_accuracy"] if "val_accuracy" in history else pd.Series(dtype=float)
    return {
        "run": SHIPPED,
        "status": "shipped",
        "val acc": shown_accuracy(float(val.max()) if len(val) else None),
        "test acc": shown_accuracy(test_accuracy),
        "test 95% interval": interval_cell(test_accuracy, test_image_count(folder, {}) if folder else None),
        **_config_columns(config, len(history) or None),
        "problem": "",
    }


def shown_accuracy(value: Any) -> float | None:
    """An accuracy for a table, rounded to 6 places. Keras logs accuracies as float32 (27/30 is stored as
    0.89999998), and a table column with a step cuts the decimals off rather than rounding: 89.9%, not 90.0%."""
    return round(float(value), 6) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def test_image_count(folder: Path, summary: dict[str, Any]) -> int | None:
    """How many test images a model's test accuracy was measured on: its folder's evaluation.json, else its
    run's summary; None when neither says."""
    try:
        n = bounded_json.read(folder / "evaluation.json").get("n")
    except (OSError, ValueError, AttributeError):
        n = None
    n = n if isinstance(n, int) and not isinstance(n, bool) else summary.get("test_images")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else None


def interval_cell(accuracy: Any, test_images: int | None) -> str | None:
    """'74.4–96.5% (30 images)': the 95% interval of a test accuracy, for a table cell; None when unknown."""
    interval = accuracy_interval(accuracy, test_images)
    return f"{interval[0]:.1%}–{interval[1]:.1%} ({test_images:,} images)" if interval else None


def ran_config(config: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The settings that trained the run's model: its own, with the start the "Your images" preset measured and
    chose applied (its summary's `start_choice`: head only, fine-tune or from scratch, with their epochs and base).
    A run still measuring, or any other run, trained with its settings as stored."""
    choice = summary.get("start_choice")
    changes = choice.get("changes") if isinstance(choice, dict) else None
    if not config.get("measure_start") or not isinstance(changes, dict):
        return config
    return {**config, **changes, "measure_start": False}


def start_text(config: dict[str, Any], summary: dict[str, Any]) -> str:
    """How the run's model started, in words: 'from scratch', 'ImageNet weights', 'base of RUN', and for a start the
    preset measured, the one it chose ('head only, measured, base of default'; 'from scratch, measured')."""
    ran = ran_config(config, summary)
    weights = _weights_label(str(ran.get("weights")))
    if ran is config:
        return weights + (", start being measured" if config.get("measure_start") else "")
    chosen = summary["start_choice"].get("chosen")
    return f"{chosen}, measured" + ("" if ran.get("weights") == "none" else f", {weights}")


def _config_columns(c: dict[str, Any], epochs_run: int | None, start: str | None = None) -> dict[str, Any]:
    """The classes, and the other settings in one sentence: a column each would not fit beside the sidebar; none
    for a run whose settings cannot be read (its problem says why)."""
    if not c.get("arch"):
        return {"classes": None, "settings": None}
    arch = c.get("arch") if c.get("arch") != "vgg16_bn" else f"vgg16_bn ×{c.get('width', 1.0):g}"
    head = f"{c.get('head')} head {'-'.join(str(u) for u in c.get('head_units', []))}"
    return {
        "classes": ", ".join(c["classes"]) if c.get("classes") else "all",
        "settings": f"{arch}, {head}, {c.get('input_size')} px · {start or _weights_label(str(c.get('weights')))}, {c.get('optimizer')}, "
                    f"batch {c.get('batch_size')} · " + (f"{epochs_run} of " if epochs_run is not None else "")  # unknown: killed mid-phase
                    + f"{c.get('epochs_head')}+{c.get('epochs_finetune')} epochs",
    }


def _weights_label(weights: str) -> str:
    """'ImageNet weights', 'from scratch', a weights file's name, or "base of RUN" for a trained model's base (transfer)."""
    if weights in ("imagenet", "none"):
        return {"imagenet": "ImageNet weights", "none": "from scratch"}[weights]
    path = Path(weights)
    return f"base of {path.parent.name}" if path.suffix == ".keras" else path.name
