"""Grad-CAM (Selvaraju et al., 2017): which parts of an image drove a class score.

The score is the class logit (before softmax, as in the paper). At CIFAR's 32x32,
VGG16's block4 and block5 maps are 4x4 and 2x2. On the model shipped first (85.69%),
blanking the part of the image those maps highlight hurt the prediction no more than
blanking the part they did not, while block3's 8x8 maps passed that check
(`python -m cifar_core gradcam`, README). So the default layer is the deepest one
whose map is at least MIN_MAP_SIZE wide: block3 at 32 px, block4 at 64 px. Whether
a layer passes depends on the model, so the dashboard runs the check (`deletion_check`)
for the model and layer it shows and says what it found (`check_sentence`).
"""

from __future__ import annotations

from typing import Callable

import keras
import matplotlib
import numpy as np
import tensorflow as tf

from cifar_core.data import NATIVE_SIZE, preprocess

MIN_MAP_SIZE = 8
# A layer's maps are "faithful" when blanking their hottest part costs the prediction at
# least this much more probability than blanking their coldest part.
FAITHFUL_MARGIN = 0.05
GREY = 124  # about CIFAR-10's mean pixel: what a blanked region is filled with


class GradCamError(ValueError):
    """The model or layer cannot be explained with Grad-CAM; the message says why."""


def cam_layers(model: keras.Model) -> list[str]:
    """The base's rectified conv outputs, shallow to deep: the layers Grad-CAM can explain from."""
    base = _part(model, "base")
    names = []
    for layer in base.layers:
        # VGG16 puts the ReLU inside the conv; VGG16-BN has conv -> BN -> a separate ReLU.
        if getattr(layer, "activation", None) is keras.activations.relu and len(layer.output.shape) == 4:
            names.append(layer.name)
    return names


def default_layer(model: keras.Model) -> str:
    """The deepest conv output at least MIN_MAP_SIZE wide (the shallowest one if none is)."""
    base = _part(model, "base")
    names = cam_layers(model)
    wide = [n for n in names if base.get_layer(n).output.shape[1] >= MIN_MAP_SIZE]
    return (wide or names)[-1]


def _part(model: keras.Model, name: str) -> keras.Model:
    try:
        return model.get_layer(name)
    except ValueError as err:
        raise GradCamError(f"Grad-CAM needs a model built by cifar_core (image -> base -> head); this one has no {name!r} part.") from err


class GradCam:
    """Class heatmaps for one model and one layer, computed in batches."""

    def __init__(self, model: keras.Model, layer: str | None = None):
        base, head = _part(model, "base"), _part(model, "head")
        self.layer = layer or default_layer(model)
        if self.layer not in [l.name for l in base.layers] or len(base.get_layer(self.layer).output.shape) != 4:
            raise GradCamError(f"Layer {self.layer!r} is not a feature map of this model's base; choose one of {cam_layers(model)}.")
        self.input_size = int(model.input_shape[1])
        self._features = keras.Model(base.input, [base.get_layer(self.layer).output, base.output])
        self._penultimate = keras.Model(head.input, head.layers[-1].input)
        self._classifier = head.layers[-1]  # Dense(10, softmax): its kernel and bias give the logits

    def heatmaps(self, images: np.ndarray, classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, 32, 32) in [0, 1] for uint8 images (N, 32, 32, 3), and the classes explained.

        `classes` defaults to each image's predicted class.
        """
        x = preprocess(tf.convert_to_tensor(images, tf.uint8), self.input_size)
        with tf.GradientTape() as tape:
            tape.watch(x)  # records the whole forward pass, frozen layers included
            maps, features = self._features(x, training=False)
            hidden = tf.cast(self._penultimate(features, training=False), tf.float32)
            logits = hidden @ tf.cast(self._classifier.kernel, tf.float32) + tf.cast(self._classifier.bias, tf.float32)
            if classes is None:
                classes = tf.argmax(logits, axis=1).numpy()
            score = tf.gather(logits, classes, axis=1, batch_dims=1)
        grads = tf.cast(tape.gradient(score, maps), tf.float32)
        maps = tf.cast(maps, tf.float32)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1, keepdims=True))
        cam = tf.image.resize(cam, (NATIVE_SIZE, NATIVE_SIZE), method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        cam = tf.math.divide_no_nan(cam, peak)
        return cam.numpy(), np.asarray(classes)

    def overlays(self, images: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Each uint8 image with its heatmap for `classes` (default: the predicted class) blended over it."""
        if len(images) == 0:
            return images
        heat, _ = self.heatmaps(images, classes)
        return np.stack([overlay(image, h) for image, h in zip(images, heat)])


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (uint8 HxWx3) with the heatmap (HxW in [0, 1]) blended over it in the jet colour map."""
    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return ((1 - alpha) * image.astype(np.float32) + alpha * colours).round().astype(np.uint8)


def deletion_check(model: keras.Model, images: np.ndarray, predict: Callable[[np.ndarray], np.ndarray],
                   layers: list[str] | None = None, fraction: float = 0.25, seed: int = 0) -> list[dict]:
    """How faithful each layer's heatmaps are: the predicted class's mean probability drop when
    the hottest `fraction` of each image is blanked, against blanking the coldest `fraction`.

    A faithful map has `hot_drop` well above `cold_drop` (`faithful`: by FAITHFUL_MARGIN or more).
    `predict` maps uint8 images to probabilities.
    """
    probs = predict(images)
    classes = probs.argmax(axis=1)
    rows = np.arange(len(images))
    k = int(round(fraction * NATIVE_SIZE * NATIVE_SIZE))
    # Maps that are zero everywhere would otherwise blank the same corner every time.
    jitter = np.random.default_rng(seed).random((len(images), NATIVE_SIZE * NATIVE_SIZE)) * 1e-6

    def drop(order: np.ndarray) -> float:
        mask = np.zeros(order.shape, bool)
        np.put_along_axis(mask, order[:, :k], True, axis=1)
        blanked = np.where(mask.reshape(-1, NATIVE_SIZE, NATIVE_SIZE, 1), np.uint8(GREY), images)
        return float(np.mean(probs[rows, classes] - predict(blanked)[rows, classes]))

    results = []
    for layer in layers or cam_layers(model):
        heat, _ = GradCam(model, layer).heatmaps(images, classes)
        flat = heat.reshape(len(images), -1)
        order = np.argsort(-(flat + jitter), axis=1)
        hot, cold = drop(order), drop(order[:, ::-1])
        results.append({"layer": layer, "map_size": int(_part(model, "base").get_layer(layer).output.shape[1]),
                        "hot_drop": hot, "cold_drop": cold, "faithful": hot - cold >= FAITHFUL_MARGIN,
                        "empty_maps": float(np.mean(flat.max(axis=1) == 0))})
    return results


def check_images(x: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """The `count` images (at most all of `x`) that `deletion_check` measures: a seeded sample, the same each time."""
    return x[np.random.default_rng(seed).choice(len(x), min(count, len(x)), replace=False)]


def check_sentence(row: dict, images: int) -> str:
    """What one `deletion_check` row on `images` images means, in words."""
    measured = (f"Check on {images} test images: blanking the hottest quarter of each map lowers the predicted "
                f"class's probability by {row['hot_drop']:.2f} on average, blanking the coldest quarter by {row['cold_drop']:.2f}.")
    if row["faithful"]:
        return f"{measured} This layer's maps point at what the prediction depends on."
    return (f"{measured} This layer's maps do not point at what the prediction depends on more than at the rest "
            "of the image: read them with care, or pick another layer.")
