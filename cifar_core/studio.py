"""The logic behind the dashboard's pages, kept out of the pages themselves.

Which models can be used, where a model's test images and predictions come
from, how a live run is progressing, how the training form's text becomes a
validated TrainConfig, and how the predictions table is filtered.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from cifar_core.config import ARCHS, CUTS, HEADS, OPTIMIZERS, SCHEDULES, STRATEGIES, TrainConfig
from cifar_core.data import DataError, load_cifar10
from cifar_core.evaluate import Interpretation, evaluate_model
from cifar_core.paths import artifacts_dir, default_model_dir
from cifar_core.runs import Run, RunStore

Progress = Callable[[int, int, str], None]

# ---------------------------------------------------------------- the training form

# The form's sections, in the order a user decides things; every TrainConfig field appears once.
FORM_SECTIONS: dict[str, tuple[str, ...]] = {
    "Data": ("data_dir", "limit", "val_fraction", "skip_bad"),
    "Network": ("weights", "arch", "input_size", "cut", "head", "head_units", "dropout"),
    "Phases": ("epochs_head", "lr", "epochs_finetune", "finetune_lr", "finetune_freeze"),
    "Optimisation": ("optimizer", "momentum", "weight_decay", "schedule", "warmup_epochs", "label_smoothing", "batch_size"),
    "Regularisation and speed": ("augment", "patience", "bf16", "feature_cache", "seed", "strategy"),
}
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "arch": ARCHS, "cut": CUTS, "head": HEADS, "optimizer": OPTIMIZERS, "schedule": SCHEDULES, "strategy": STRATEGIES,
}

# Starting points for the form; each overrides some of TrainConfig's defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "Seed notebook (VGG16 on ImageNet weights)": {},
    "Quick try (a minute on a CPU, from scratch)": dict(
        weights="none", arch="vgg16_bn", cut="block3_pool", head="gap", head_units=(32,), dropout=0.0,
        epochs_head=2, epochs_finetune=3, lr=1e-2, finetune_lr=1e-3, optimizer="adam", batch_size=16,
        augment=False, patience=0, limit=20, val_fraction=0.2,
    ),
}


def form_defaults(preset: str | None = None) -> dict[str, Any]:
    """Form values: TrainConfig's defaults with a preset's changes and the data folder currently in use."""
    values = dataclasses.replace(TrainConfig(), **PRESETS.get(preset or "", {})).to_dict()
    values["data_dir"] = TrainConfig().resolved_data_dir() or ""
    return values


def form_text(value: Any) -> str:
    """How a setting is written in the form's text boxes (the inverse of config_from_form)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_from_form(values: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from the form's values (numbers may still be text); ConfigError names each bad field."""
    from cifar_core.cli import config_from_args  # the CLI's parser reports every bad value at once

    raw: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, str):
            value = value.strip() or None  # an empty box means "not set"
        if name == "head_units" and isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        raw[name] = value
    return config_from_args(argparse.Namespace(**raw))


def save_uploaded_weights(name: str, data: bytes) -> Path:
    """Keep an uploaded base-weights file under artifacts/uploads/ and return its path."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "weights.h5"
    folder = artifacts_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelChoice:
    """A usable model: a completed or stopped run, or the shipped default model."""

    label: str
    model_path: Path
    folder: Path
    run_id: str | None
    config: dict[str, Any]
    accuracy: float | None


def model_choices(store: RunStore) -> list[ModelChoice]:
    """Usable models, best bet first: completed runs (newest first), the shipped default
    model, then stopped runs (they keep their best model so far)."""
    runs = {"completed": [], "stopped": []}
    for run in store.list():
        if run.status in runs and run.health() is None:
            acc = run.summary.get("test_accuracy")
            label = f"run {run.id}" + (" (stopped)" if run.status == "stopped" else "")
            label += f" · test acc {acc:.1%}" if isinstance(acc, (int, float)) else ""
            runs[run.status].append(ModelChoice(label, run.model_path, run.dir, run.id, run.config, acc))
    shipped = []
    folder = default_model_dir()
    if (folder / "model.keras").is_file():
        config = _read_json(folder / "config.json")
        acc = _read_json(folder / "evaluation.json").get("accuracy")
        label = "shipped default model" + (f" · test acc {acc:.1%}" if isinstance(acc, (int, float)) else "")
        shipped.append(ModelChoice(label, folder / "model.keras", folder, None, config, acc))
    return runs["completed"] + shipped + runs["stopped"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def history(choice: ModelChoice, store: RunStore) -> pd.DataFrame:
    """Per-epoch metrics of the model's training: from the store for a run, else the folder's history.csv."""
    if choice.run_id:
        return store.metrics(choice.run_id, "epoch")
    try:
        return pd.read_csv(choice.folder / "history.csv")
    except (OSError, ValueError):
        return pd.DataFrame(columns=["phase", "epoch", "step", "ts"])


# ---------------------------------------------------------------- test images and predictions


def data_dir_for(choice: ModelChoice | None) -> str | None:
    """The test images to show for a model: its run's data folder if it still exists, else the current one."""
    own = (choice.config.get("data_dir") if choice else None) or None
    if own and Path(own).is_dir():
        return own
    return TrainConfig().resolved_data_dir()


def load_test_set(data_dir: str | None, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test images and labels from a data folder (decoded once, then cached); DataError without one."""
    if not data_dir:
        # Never fall back to Keras' download from the dashboard: it can hang without a network.
        raise DataError("No data folder set: point CIFAR10_DIR (or the Train page's data folder) at CIFAR-10.")
    data = load_cifar10(data_dir, progress=progress)
    return data.x_test, data.y_test


def saved_predictions(choice: ModelChoice) -> Interpretation | None:
    """The test predictions saved in the model's folder at the end of training, if any."""
    try:
        return Interpretation.load(choice.folder)
    except (OSError, KeyError, ValueError):
        return None


def matching_predictions(choice: ModelChoice, y_test: np.ndarray) -> Interpretation | None:
    """The saved test predictions, if they were made on exactly this test set."""
    saved = saved_predictions(choice)
    if saved is not None and len(saved.y) == len(y_test) and np.array_equal(saved.y, y_test):
        return saved
    return None


def compute_predictions(choice: ModelChoice, x_test: np.ndarray, y_test: np.ndarray, progress: Progress | None = None) -> Interpretation:
    """Predict the test set with the model and save the result into its run folder if it has none yet.

    Existing predictions are never overwritten (they are the run's own evaluation,
    possibly on a different test set than the one shown now), and the shipped
    model's folder is never written to.
    """
    from cifar_core.model import load_model

    model = load_model(choice.model_path)
    interp = evaluate_model(model, x_test, y_test, input_size=int(model.input_shape[1]), progress=progress)
    if choice.run_id and saved_predictions(choice) is None:
        try:
            interp.save(choice.folder)
        except OSError:
            pass  # a read-only model folder: the dashboard still keeps the result for the session
    return interp


def filter_predictions(
    table: pd.DataFrame,
    *,
    true: list[str] | None = None,
    predicted: list[str] | None = None,
    correct: bool | None = None,
    confidence: tuple[float, float] = (0.0, 1.0),
    sort_by: str = "confidence",
    descending: bool = True,
) -> pd.DataFrame:
    """Rows of `Interpretation.table()` matching the filters (empty lists mean any), sorted; the index is the image index."""
    keep = table["confidence"].between(*confidence)
    if true:
        keep &= table["true"].isin(true)
    if predicted:
        keep &= table["predicted"].isin(predicted)
    if correct is not None:
        keep &= table["correct"] == correct
    return table[keep].sort_values(sort_by, ascending=not descending, kind="stable")


def thumbnail(data: bytes, size: int = 160) -> np.ndarray | None:
    """An RGB preview of an uploaded image file, or None when it cannot be drawn.

    Browsers (and st.image) choke on some files the classifier accepts, e.g.
    16-bit PNGs or CMYK JPEGs; this goes through the classifier's own conversion.
    """
    from PIL import Image, ImageOps

    from cifar_core.inference import to_rgb

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at reduced scale
            im = ImageOps.exif_transpose(im)
            im.thumbnail((size, size))
            return np.asarray(to_rgb(im), dtype=np.uint8)
    except Exception:  # PIL signals bad files with many exception types; the caller shows the file's error
        return None


def upscale(image: np.ndarray, factor: int = 3) -> np.ndarray:
    """Nearest-neighbour enlargement, so 32x32 thumbnails stay crisp instead of blurred by the browser."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


# ---------------------------------------------------------------- live runs


@dataclass(frozen=True)
class LiveProgress:
    """Where a training is, from its latest batch record."""

    phase: str
    epoch: int
    total_epochs: int
    batch: int
    steps: int
    images_per_s: float
    eta_s: float
    fraction: float

    def describe(self) -> str:
        eta = "–" if not math.isfinite(self.eta_s) else _duration(self.eta_s)
        return (f"{self.phase} phase · epoch {self.epoch}/{self.total_epochs} · batch {self.batch}/{self.steps}"
                f" · {self.images_per_s:,.0f} images/s · ETA {eta}")


def live_progress(run: Run, batches: pd.DataFrame) -> LiveProgress | None:
    """Progress of `run` over all its planned epochs (None before the first batch is logged).

    The ETA assumes every planned epoch runs; early stopping can only make it shorter.
    """
    if batches.empty or "batch" not in batches:
        return None
    last = batches.iloc[-1]
    total = int(run.config.get("epochs_head", 0)) + int(run.config.get("epochs_finetune", 0))
    steps, batch, epoch = int(last["steps"]), int(last["batch"]), int(last["epoch"])
    done = (epoch - 1) * steps + batch
    planned = max(total * steps, 1)
    rate = float(last["images_per_s"]) / max(int(run.config.get("batch_size", 1)), 1)  # batches/s
    eta = (planned - done) / rate if rate > 0 else math.nan
    return LiveProgress(str(last["phase"]), epoch, total, batch, steps, float(last["images_per_s"]), eta, min(done / planned, 1.0))


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"


def run_row(run: Run) -> dict[str, Any]:
    """One line of the runs table: status (or 'broken' and why), config highlights and metrics."""
    broken = run.health() if run.status not in ("queued", "running") else None
    c, s = run.config, run.summary
    return {
        "run": run.id,
        "status": "broken" if broken else run.status,
        "arch": c.get("arch"),
        "weights": Path(str(c.get("weights"))).name if c.get("weights") not in ("imagenet", "none") else c.get("weights"),
        "input": c.get("input_size"),
        "head": f"{c.get('head')} {'-'.join(str(u) for u in c.get('head_units', []))}",
        "epochs": f"{c.get('epochs_head')}+{c.get('epochs_finetune')}",
        "optimizer": c.get("optimizer"),
        "batch": c.get("batch_size"),
        "val acc": s.get("val_accuracy") or s.get("best_val_accuracy"),
        "test acc": s.get("test_accuracy"),
        "epochs run": s.get("epochs_completed"),
        "created": pd.Timestamp(run.created, unit="s").strftime("%Y-%m-%d %H:%M"),
        "problem": broken or run.error or "",
    }

