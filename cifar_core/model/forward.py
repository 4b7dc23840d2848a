"""The one batched forward pass over a model, and what it serves: class probabilities (optionally averaged
over test-time augmentation views).

Prediction, evaluation and calibration (`predict_probs`), the frozen base's features that training caches
(`frozen_features`), and analysis' features and similar-image descriptors all run through `forward_batches`.
It sits at the model layer because training's feature cache needs it below prediction.
"""

from __future__ import annotations

from typing import Callable, Iterable

import keras
import numpy as np

from cifar_core.data import augment
from cifar_core.data.pipeline import image_batches

Progress = Callable[[int, int, str], None]
EVAL_BATCH = 500


def forward_batches(
    step: Callable[[object], object],
    x: np.ndarray,
    *,
    batch_size: int,
    width: tuple[int, ...],
    label: str,
    input_size: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """`step` over uint8 images `x` in order, in batches, as one float32 array; (0, *width) when `x` is empty.

    With `input_size`, `step` gets preprocessed batches (`image_batches`); without it, slices of the uint8
    images (for a `step` that preprocesses inside its own traced function). `progress(done, total, label)`
    is told after every batch.
    """
    batches: Iterable = (image_batches(x, batch_size, input_size=input_size) if input_size is not None
                         else (x[start:start + batch_size] for start in range(0, len(x), batch_size)))
    out, done = [], 0
    for batch in batches:
        out.append(np.asarray(step(batch), dtype=np.float32))
        done += len(out[-1])
        if progress:
            progress(done, len(x), label)
    return np.concatenate(out) if out else np.zeros((0, *width), np.float32)


def predict_probs(
    model: keras.Model,
    x: np.ndarray,
    *,
    input_size: int,
    batch_size: int = EVAL_BATCH,
    tta: bool = False,
    progress: Progress | None = None,
) -> np.ndarray:
    """Class probabilities for uint8 images `x`; with `tta`, the weighted mean over `augment.tta_views`."""

    def step(images):
        if tta:
            views, weights = augment.tta_views(images)
            return augment.tta_average(model.predict_on_batch(views), weights)
        return model.predict_on_batch(images)

    return forward_batches(step, x, batch_size=batch_size, width=(int(model.output_shape[-1]),), label="predicting",
                           input_size=input_size, progress=progress)
