"""Grad-CAM (Selvaraju et al., 2017): which parts of an image drove a class score.

The score is the class logit (before softmax, as in the paper). At CIFAR's 32x32,
VGG16's block4 and block5 maps are 4x4 and 2x2. On the model shipped first (85.69%),
blanking the part of the image those maps highlight hurt the prediction no more than
blanking the part they did not, while block3's 8x8 maps passed that check
(`python -m cifar_core gradcam`, README). So the default layer is the deepest one
whose map is at least MIN_MAP_SIZE wide: block3 at 32 px, block4 at 64 px. Whether
a layer passes depends on the model (on the shipped model none does), so the dashboard runs
the check (`faithfulness.deletion_check`) for the model and layer it shows, and defaults to
a method that passes it (`explain`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cifar_core.data.images import NATIVE_SIZE
from cifar_core.data.pipeline import preprocess
from cifar_core.explain.base import ExplainError, Explainer, Progress

if TYPE_CHECKING:  # Keras and TensorFlow are imported where a model is read: the method registry, which the CLI's parser reads, stays light
    import keras

    from cifar_core.predict.inference import Classifier

MIN_MAP_SIZE = 8
BATCH = 128  # images per gradient pass: bounds memory, whatever the number of images


class GradCamError(ExplainError):
    """The model or layer cannot be explained with Grad-CAM; the message says why."""


def cam_layers(model: keras.Model) -> list[str]:
    """The base's rectified conv outputs, shallow to deep: the layers Grad-CAM can explain from."""
    import keras

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


class GradCam(Explainer):
    """Class heatmaps for one model and one layer, computed in batches."""

    method, name = "gradcam", "Grad-CAM"
    takes_layer = True

    @classmethod
    def for_classifier(cls, classifier: Classifier, layer: str | None = None) -> GradCam:
        return cls(classifier.model, layer)

    @classmethod
    def layers(cls, model: keras.Model) -> list[str]:
        """The default layer, then the other conv outputs deep to shallow."""
        default = default_layer(model)
        return [default, *[name for name in reversed(cam_layers(model)) if name != default]]

    @classmethod
    def label(cls, layer: str | None) -> str:
        return f"Grad-CAM · {layer}"

    def __init__(self, model: keras.Model, layer: str | None = None):
        import keras

        base, head = _part(model, "base"), _part(model, "head")
        self.layer = layer or default_layer(model)
        if self.layer not in [l.name for l in base.layers] or len(base.get_layer(self.layer).output.shape) != 4:
            raise GradCamError(f"Layer {self.layer!r} is not a feature map of this model's base; choose one of {cam_layers(model)}.")
        self.input_size = int(model.input_shape[1])
        self.map_size = int(base.get_layer(self.layer).output.shape[1])
        self._features = keras.Model(base.input, [base.get_layer(self.layer).output, base.output])
        self._penultimate = keras.Model(head.input, head.layers[-1].input)
        self._classifier = head.layers[-1]  # Dense(10, softmax): its kernel and bias give the logits

    def heatmaps(self, images: np.ndarray, classes: np.ndarray | None = None,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, 32, 32) in [0, 1] for uint8 images (N, 32, 32, 3), and the classes explained.

        `classes` defaults to each image's predicted class.
        """
        heat, explained = [], []
        for start in range(0, len(images), BATCH):
            h, c = self._batch(images[start:start + BATCH], None if classes is None else np.asarray(classes)[start:start + BATCH])
            heat.append(h)
            explained.append(c)
            if progress:
                progress(min(start + BATCH, len(images)), len(images))
        return np.concatenate(heat), np.concatenate(explained)

    def _batch(self, images: np.ndarray, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

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
