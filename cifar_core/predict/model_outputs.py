"""What one forward pass tells about an image beyond its class: the probabilities, the logits behind them, and
the low-level feature statistics the "none of these" detector (`ood`) scores.

A studio model is `image -> base -> head`, the head ending in a softmax Dense layer. `outputs_model` rebuilds it
with two more outputs from the same layers and weights: the logits (that Dense layer without its softmax) and
the global average of an early pooling layer of the base (`LOW_LEVEL_LAYER`, where colour and texture are
still kept). Its probabilities are the model's own, so `inference.Classifier` serves predictions and scores
from one pass, and the trainer calibrates and fits the detector from one pass over the validation images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np

from cifar_core.data import augment
from cifar_core.model.forward import EVAL_BATCH, forward_batches

Progress = Callable[[int, int, str], None]
# Measured on the shipped model (`bench ood`, README "None of these"): the Mahalanobis distance of block2_pool's
# averaged features tells CIFAR-10 test images from digits, noise and flat colours with AUROC 0.998-1.0, where the
# max-softmax and energy scores of the head reach 0.58-0.98.
LOW_LEVEL_LAYER = "block2_pool"


@dataclass(frozen=True)
class Outputs:
    """Per image: class probabilities (N, K), logits (N, K) and low-level features (N, D), views averaged."""

    probs: np.ndarray
    logits: np.ndarray
    low: np.ndarray

    def take(self, rows) -> "Outputs":
        return Outputs(self.probs[rows], self.logits[rows], self.low[rows])


def low_level_layer(base: keras.Model) -> str:
    """LOW_LEVEL_LAYER when the base has it (every studio base but one cut at block1), else its first pooling layer."""
    names = [layer.name for layer in base.layers]
    if LOW_LEVEL_LAYER in names:
        return LOW_LEVEL_LAYER
    return next(name for name in names if name.endswith("_pool"))


def outputs_model(model: keras.Model) -> keras.Model | None:
    """preprocessed images -> [probabilities, logits, low-level features] through `model`'s own layers and
    weights; None for a model without the studio's base and softmax head (it gets no detector)."""
    try:
        base, head = model.get_layer("base"), model.get_layer("head")
    except ValueError:
        return None
    dense = head.layers[-1]
    if not isinstance(dense, keras.layers.Dense) or getattr(dense.activation, "__name__", "") != "softmax":
        return None
    inputs = keras.Input(model.input_shape[1:])
    layer = low_level_layer(base)
    low, deep = keras.Model(base.input, [base.get_layer(layer).output, base.output], name="base_outputs")(inputs, training=False)
    penultimate = keras.Model(head.input, dense.input, name="head_body")(deep, training=False)
    # The Dense layer's own weights, without its softmax: the logits the probabilities come from.
    linear = keras.layers.Dense(dense.units, dtype="float32", name="logits")
    logits = linear(penultimate)
    linear.set_weights(dense.get_weights())
    probs = keras.layers.Softmax(dtype="float32", name="probabilities")(logits)
    pooled = keras.layers.GlobalAveragePooling2D(dtype="float32", name="low_level")(low)
    return keras.Model(inputs, [probs, logits, pooled], name="outputs")


def averaged(outputs: list, weights: list[float] | None) -> list[np.ndarray]:
    """Each output (V*N, ...), stacked view by view as `augment.tta_views` stacks them, averaged over the views
    with `weights` (as `augment.tta_average` averages the probabilities); without views, as they are."""
    parts = [np.asarray(o, np.float32) for o in outputs]
    if weights is None:
        return parts
    w = np.asarray(weights, np.float32)
    return [np.tensordot(w, p.reshape(len(w), -1, p.shape[-1]), axes=1) for p in parts]


def batch_outputs(model: keras.Model, x: np.ndarray, *, input_size: int, tta: bool, progress: Progress | None = None,
                  built: keras.Model | None = None) -> Outputs | None:
    """`Outputs` of uint8 images `x`, with the model's TTA when `tta`; None for a model `outputs_model` cannot
    rebuild. `built`: the outputs model, when the caller has it."""
    built = built or outputs_model(model)
    if built is None:
        return None
    classes = int(model.output_shape[-1])
    width = int(built.outputs[2].shape[-1])

    def step(images):
        views, weights = augment.tta_views(images) if tta else (images, None)
        return np.concatenate(averaged(built.predict_on_batch(views), weights), axis=1)

    flat = forward_batches(step, x, batch_size=EVAL_BATCH, width=(2 * classes + width,), label="predicting",
                           input_size=input_size, progress=progress)
    return Outputs(flat[:, :classes], flat[:, classes:2 * classes], flat[:, 2 * classes:])
