"""The deletion check: does an explanation's map point at what the prediction depends on?

Blank (fill with grey) the hottest `fraction` of each image's map, then the coldest, and
measure how much the predicted class's probability drops each time. A faithful map has the
first drop well above the second: by FAITHFUL_MARGIN or more. It works for any `Explainer`;
the pages keep each result on disk, so a model and method are checked once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.base import bounded_json
from cifar_core.data.images import NATIVE_SIZE
from cifar_core.explain.base import GREY, Explainer, Progress

# Maps are "faithful" when blanking their hottest part costs the prediction at least this
# much more probability than blanking their coldest part.
FAITHFUL_MARGIN = 0.05
PREDICT_BATCH = 512  # images per prediction call: bounds memory, whatever the number of images checked


def deletion_check(explainer: Explainer, images: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
                   fraction: float = 0.25, seed: int = 0, progress: Progress | None = None) -> dict:
    """The predicted class's mean probability drop when the hottest `fraction` of each image's map
    is blanked (`hot_drop`), against blanking the coldest `fraction` (`cold_drop`).

    `predict` maps uint8 images to probabilities; `progress` hears of the maps computed.
    """
    probs = _batched(predict, images)
    classes = probs.argmax(axis=1)
    rows = np.arange(len(images))
    k = int(round(fraction * NATIVE_SIZE * NATIVE_SIZE))
    heat, _ = explainer.heatmaps(images, classes, progress)
    flat = heat.reshape(len(images), -1)
    # Maps that are flat (zero everywhere, or equal over a region) would otherwise blank the same corner every time.
    jitter = np.random.default_rng(seed).random(flat.shape) * 1e-6
    order = np.argsort(-(flat + jitter), axis=1)

    def drop(order: np.ndarray) -> float:
        mask = np.zeros(order.shape, bool)
        np.put_along_axis(mask, order[:, :k], True, axis=1)
        blanked = np.where(mask.reshape(-1, NATIVE_SIZE, NATIVE_SIZE, 1), np.uint8(GREY), images)
        return float(np.mean(probs[rows, classes] - _batched(predict, blanked)[rows, classes]))

    hot, cold = drop(order), drop(order[:, ::-1])
    return {"method": explainer.method, "layer": explainer.layer, "map_size": explainer.map_size,
            "hot_drop": hot, "cold_drop": cold, "faithful": hot - cold >= FAITHFUL_MARGIN,
            "empty_maps": float(np.mean(flat.max(axis=1) == 0))}


def _batched(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    return np.concatenate([predict(images[i:i + PREDICT_BATCH]) for i in range(0, len(images), PREDICT_BATCH)])


def check_images(x: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """The `count` images (at most all of `x`) that `deletion_check` measures: a seeded sample, the same each time."""
    return x[np.random.default_rng(seed).choice(len(x), min(count, len(x)), replace=False)]


def check_sentence(row: dict, images: int) -> str:
    """What one `deletion_check` row on `images` images means, in words."""
    measured = (f"Check on {images} test images: blanking the hottest quarter of each map lowers the predicted "
                f"class's probability by {row['hot_drop']:.2f} on average, blanking the coldest quarter by {row['cold_drop']:.2f}.")
    if row["faithful"]:
        return f"{measured} These maps point at what the prediction depends on."
    return (f"{measured} These maps do not point at what the prediction depends on more than at the rest "
            "of the image: read them with care, or pick another method or layer.")


def saved_check(folder: Path, name: str) -> dict | None:
    """A check result kept by `save_check` under `name`, or None (absent or damaged: check again)."""
    try:
        row = bounded_json.read(folder / f"{name}.json")
    except (OSError, ValueError):
        return None
    return row if isinstance(row, dict) and {"hot_drop", "cold_drop", "faithful"} <= row.keys() else None


def save_check(folder: Path, name: str, row: dict) -> None:
    """Keep a check result (atomically, so a reader never sees half a file); a read-only folder keeps nothing."""
    try:
        atomic_write_text(folder / f"{name}.json", json.dumps(row))
    except OSError:
        pass
