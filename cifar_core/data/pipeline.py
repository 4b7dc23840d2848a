"""Decoded images into Keras: VGG16's preprocessing, and the tf.data pipelines that train, evaluate and predict
(shuffled with a seed, augmented with augment.py's stateless flips and shifts)."""

from __future__ import annotations

import math

import numpy as np

from cifar_core.data.images import NATIVE_SIZE


def preprocess(images, input_size: int = NATIVE_SIZE):
    """uint8 RGB images (N, H, W, 3) -> float32 VGG16 input at `input_size`.

    The same function serves training, evaluation and inference. It uses VGG16's own
    `preprocess_input` (RGB->BGR, ImageNet mean subtraction); the seed divided by 255,
    which does not match ImageNet weights.
    """
    import keras
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if input_size != x.shape[1] or input_size != x.shape[2]:
        x = tf.image.resize(x, (input_size, input_size), method="bilinear")
    return keras.applications.vgg16.preprocess_input(x)


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot rows (N, num_classes), the loss's target format."""
    return np.eye(num_classes, dtype=np.float32)[y]


def batched(x, y, batch_size: int, *, training: bool, seed: int = 0):
    """(x, y) as a tf.data pipeline of batches (one pass), reshuffled with `seed` every pass when training.

    For validation, evaluation and `make_dataset`; training runs use `epoch_batches`.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def image_batches(x: np.ndarray, batch_size: int, *, input_size: int = NATIVE_SIZE):
    """One pass over uint8 images `x` in order, as preprocessed batches without labels: what predicting reads."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    return ds.map(lambda images: preprocess(images, input_size), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    augment: bool = False,
    input_size: int = NATIVE_SIZE,
    seed: int = 0,
    num_classes: int,
):
    """One pass over (x, y) as batches of (preprocessed images, one-hot labels), prefetched.

    With `training`, reshuffled every pass; with `augment` too, random flips and
    reflect-padded shifts of up to 4 pixels. Training runs use `training_stream`.
    """
    import tensorflow as tf

    from cifar_core.data import augment as aug

    ds = batched(x, y, batch_size, training=training, seed=seed)

    def prep(images, labels):
        images = tf.cast(images, tf.float32)
        if training and augment:
            n = tf.shape(images)[0]
            images = aug.flip(images, tf.random.uniform([n]) < 0.5)
            images = aug.translate(images, 4, aug.random_offsets(n, 4))
        return preprocess(images, input_size), tf.one_hot(labels, num_classes)

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def epoch_batches(x, y, batch_size: int, *, seed: int, extra=None):
    """Endless (batch number, (x, y[, extra])) pairs, reshuffled every epoch with `seed`.

    Shared by the image stream and the cached-feature head phase: with the same seed,
    both see the same batches, so the feature cache changes speed, not results.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if extra is None else (x, y, extra))
    return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size).repeat().enumerate()


def feature_stream(features: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int = 0, num_classes: int):
    """Endless training batches of (cached base features, one-hot labels), as `training_stream` orders images."""
    import tensorflow as tf

    ds = epoch_batches(features, y, batch_size, seed=seed)
    return ds.map(lambda count, batch: (batch[0], tf.one_hot(batch[1], num_classes))).prefetch(tf.data.AUTOTUNE)


def training_stream(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    flip: str,
    translate: int,
    input_size: int = NATIVE_SIZE,
    seed: int = 0,
    first_epoch: int = 0,
    num_classes: int,
):
    """Endless training batches, epoch after epoch (`fit` with `steps_per_epoch`), reshuffled every epoch.

    Each epoch is `ceil(len(x) / batch_size)` batches, so the pipeline knows which
    epoch a batch belongs to: "alternating" flips need it. Augmentation draws from
    stateless seeds, so a run with the same seed sees the same batches.

    Args:
        flip: "random", "alternating" (see `augment`) or "none".
        translate: largest shift in pixels (reflect padding); 0 = none.
        first_epoch: the epoch the stream starts at (a resumed phase).
    """
    import tensorflow as tf

    from cifar_core.data import augment as aug

    steps = math.ceil(len(x) / batch_size)
    ds = epoch_batches(x, y, batch_size, seed=seed, extra=aug.flip_bits(len(x), seed))

    def prep(count, batch):
        images, labels, bit = batch
        images = tf.cast(images, tf.float32)
        n = tf.shape(images)[0]
        step_seed = tf.stack([tf.constant(seed, tf.int64), count])
        if flip == "alternating":
            odd_epoch = (first_epoch + count // steps) % 2 == 1
            images = aug.flip(images, tf.math.logical_xor(bit, odd_epoch))
        elif flip == "random":
            images = aug.flip(images, tf.random.stateless_uniform([n], seed=step_seed) < 0.5)
        images = aug.translate(images, translate, aug.random_offsets(n, translate, step_seed + 1))
        return preprocess(images, input_size), tf.one_hot(labels, num_classes)

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
