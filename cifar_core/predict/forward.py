"""The batched forward pass over a model: class probabilities of uint8 images, optionally averaged over
test-time augmentation views. Evaluation, calibration and inspection all predict through it."""

from __future__ import annotations

from typing import Callable

import keras
import numpy as np

from cifar_core.data import augment
from cifar_core.data.pipeline import image_batches

EVAL_BATCH = 500


def predict_probs(
    model: keras.Model,
    x: np.ndarray,
    *,
    input_size: int,
    batch_size: int = EVAL_BATCH,
    tta: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Class probabilities for uint8 images `x`; with `tta`, the weighted mean over `augment.tta_views`."""
    out, done = [], 0
    for images in image_batches(x, batch_size, input_size=input_size):
        if tta:
            views, weights = augment.tta_views(images)
            p = np.asarray(augment.tta_average(model.predict_on_batch(views), weights), dtype=np.float32)
        else:
            p = np.asarray(model.predict_on_batch(images), dtype=np.float32)
        out.append(p)
        done += len(p)
        if progress:
            progress(done, len(x), "predicting")
    return np.concatenate(out) if out else np.zeros((0, int(model.output_shape[-1])), np.float32)
