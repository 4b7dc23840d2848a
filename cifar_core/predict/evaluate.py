"""Evaluation as a first-class object, after fastai's ClassificationInterpretation.

`Interpretation` holds a split's probabilities and labels, and answers the
questions error analysis asks: accuracy, per-class precision/recall/F1, the
confusion matrix, the most confused pairs, the top losses, and which images
were class X predicted as Y.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
import pandas as pd

from cifar_core.predict import calibration
from cifar_core.base import faults
from cifar_core.base.bounded_io import UnpackError
from cifar_core.base.bounded_zip import verify_archive
from cifar_core.base.atomic_io import atomic_save_npz, atomic_write_text
from cifar_core.base.intervals import wilson
from cifar_core.data.classes import model_class_names
from cifar_core.model.forward import predict_probs

@dataclass
class Interpretation:
    """Probabilities `probs` (N, C) and true labels `y` (N,) of one split.

    `probs` are the model's outputs with its `temperature` applied (see `calibration`);
    `uncalibrated` are the outputs as the model gave them, which is what `save` stores.
    """

    probs: np.ndarray
    y: np.ndarray
    class_names: tuple[str, ...]
    temperature: float = 1.0
    raw_probs: np.ndarray | None = None  # the outputs before the temperature; None when it is 1

    @property
    def uncalibrated(self) -> np.ndarray:
        return self.probs if self.raw_probs is None else self.raw_probs

    def with_temperature(self, temperature: float) -> "Interpretation":
        """The same predictions with `temperature` applied to the model's outputs (replacing any applied before)."""
        if temperature == 1.0:
            return Interpretation(self.uncalibrated, self.y, self.class_names)
        return Interpretation(calibration.apply_temperature(self.uncalibrated, temperature), self.y, self.class_names,
                              temperature, self.uncalibrated)

    @property
    def preds(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def losses(self) -> np.ndarray:
        """Per-image cross-entropy."""
        return -np.log(np.clip(self.probs[np.arange(len(self.y)), self.y], 1e-12, 1.0))

    @property
    def confidence(self) -> np.ndarray:
        """The predicted class's probability."""
        return self.probs.max(axis=1)

    @property
    def true_probs(self) -> np.ndarray:
        """The true class's probability (the loss is its negative log)."""
        return self.probs[np.arange(len(self.y)), self.y]

    @property
    def accuracy(self) -> float:
        return float((self.preds == self.y).mean()) if len(self.y) else float("nan")

    def confusion_matrix(self, normalize: bool = False) -> np.ndarray:
        """Rows are true classes, columns predicted; `normalize` divides each row by its total."""
        n = len(self.class_names)
        cm = np.bincount(self.y * n + self.preds, minlength=n * n).reshape(n, n)
        if normalize:
            return cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
        return cm

    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support per class."""
        cm = self.confusion_matrix()
        tp = np.diag(cm).astype(float)
        precision = tp / np.maximum(cm.sum(axis=0), 1)
        recall = tp / np.maximum(cm.sum(axis=1), 1)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        return pd.DataFrame(
            {"precision": precision, "recall": recall, "f1": f1, "support": cm.sum(axis=1)},
            index=pd.Index(self.class_names, name="class"),
        )

    def most_confused(self, min_count: int = 1) -> list[tuple[str, str, int]]:
        """(true, predicted, count) for off-diagonal cells, most frequent first."""
        cm = self.confusion_matrix()
        pairs = [(self.class_names[i], self.class_names[j], int(cm[i, j])) for i in range(len(cm)) for j in range(len(cm)) if i != j and cm[i, j] >= min_count]
        return sorted(pairs, key=lambda p: -p[2])

    def top_losses(self, k: int | None = 16, mistakes_only: bool = True) -> np.ndarray:
        """Indices of the `k` (None: all) highest-loss images, highest first (by default only misclassified ones)."""
        order = np.argsort(-self.losses, kind="stable")
        if mistakes_only:
            order = order[self.preds[order] != self.y[order]]
        return order if k is None else order[:k]

    def top_losses_table(self, k: int | None = 16, mistakes_only: bool = True) -> pd.DataFrame:
        """The top losses with what explains their order, as fastai's plot_top_losses shows it:
        predicted class and its probability, true class and its probability, and the loss; highest loss first."""
        idx = self.top_losses(k, mistakes_only)
        names = np.asarray(self.class_names)
        return pd.DataFrame({
            "predicted": names[self.preds[idx]], "p_predicted": self.confidence[idx],
            "true": names[self.y[idx]], "p_true": self.true_probs[idx], "loss": self.losses[idx],
        }, index=pd.Index(idx, name="image"))

    def cell(self, true_class: int, predicted_class: int) -> np.ndarray:
        """Indices of images of `true_class` predicted as `predicted_class`, most confident first."""
        idx = np.flatnonzero((self.y == true_class) & (self.preds == predicted_class))
        return idx[np.argsort(-self.probs[idx, predicted_class])]

    def table(self) -> pd.DataFrame:
        """One row per image: true, predicted, confidence, the true class's probability, loss, correct,
        uncertain (`calibration.uncertain`), and each class's probability."""
        names = np.asarray(self.class_names)
        df = pd.DataFrame({
            "true": names[self.y],
            "predicted": names[self.preds],
            "confidence": self.confidence,
            "p_true": self.true_probs,
            "loss": self.losses,
            "correct": self.preds == self.y,
            "uncertain": calibration.uncertain(self.probs, self.temperature),
        })
        return pd.concat([df, pd.DataFrame(self.probs, columns=[f"p_{c}" for c in self.class_names])], axis=1)

    def to_dict(self) -> dict:
        per_class = self.per_class()
        return {
            "accuracy": self.accuracy,
            "n": int(len(self.y)),
            # How far the accuracy can be trusted on this many images (the 95% Wilson interval, base/intervals.py).
            "accuracy_ci95": list(wilson(int((self.preds == self.y).sum()), int(len(self.y))) or ()) or None,
            "per_class": {c: {k: float(v) for k, v in row.items()} for c, row in per_class.iterrows()},
            "confusion_matrix": self.confusion_matrix().tolist(),
            "class_names": list(self.class_names),
        }

    def save(self, run_dir: Path, split: str = "test") -> None:
        """Write `evaluation[_split].json` and `{split}_probs.npz` (uncalibrated) into the run folder, atomically."""
        run_dir = Path(run_dir)
        suffix = "" if split == "test" else f"_{split}"
        atomic_write_text(run_dir / f"evaluation{suffix}.json", json.dumps(self.to_dict(), indent=2))
        # The model's own outputs: the temperature lives in calibration.json and may be fitted again.
        atomic_save_npz(run_dir / f"{split}_probs.npz", probs=self.uncalibrated.astype(np.float32), y=self.y.astype(np.int64))

    @classmethod
    def load(cls, run_dir: Path, split: str = "test") -> "Interpretation":
        """The predictions saved in a run folder, with its model's class names (classes.json);
        OSError, KeyError or ValueError when they are missing or damaged."""
        path = Path(run_dir) / f"{split}_probs.npz"
        try:
            # An .npz is a zip: each member is first checked to unpack to exactly what it declares (bounded_zip),
            # so numpy cannot be made to unpack gigabytes from a few kilobytes.
            verify_archive(path, max_members=8)
            with np.load(path, allow_pickle=False) as z:
                probs, y = z["probs"], z["y"]
        except UnpackError as err:
            raise ValueError(f"{path} {err}") from None
        except (zipfile.BadZipFile, EOFError) as err:  # a truncated or garbled archive
            raise ValueError(f"{path} is damaged ({err})") from err
        class_names = model_class_names(Path(run_dir) / "model.keras", probs.shape[1] if probs.ndim == 2 else None)
        n_classes = len(class_names)
        if probs.shape != (len(y), n_classes) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or ((y < 0) | (y >= n_classes)).any():
            raise ValueError(f"{path} does not hold {n_classes} probabilities and one class per image")
        return cls(probs, y, class_names)


def evaluate_model(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    input_size: int,
    tta: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    class_names: tuple[str, ...],
) -> Interpretation:
    """Predict `x` and wrap the result with its labels (indices into `class_names`, the model's outputs)."""
    faults.point("evaluate")
    probs = predict_probs(model, x, input_size=input_size, tta=tta, progress=progress)
    return Interpretation(probs, np.asarray(y, dtype=np.int64), tuple(class_names))
