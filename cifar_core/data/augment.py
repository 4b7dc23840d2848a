"""Augmentation: what training shows of each image, and the views test-time augmentation averages.

After airbench94 (Jordan, 2024): random translation of reflect-padded images, and
"alternating" flips: each image is flipped at random in the first epoch and then
the other way round in every following epoch, so two consecutive epochs show
both orientations of every image instead of a random ~half.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

# Test-time augmentation: the image and its mirror (weight 1/2 between them), and the
# same two shifted by one pixel up-left and down-right (1/4 each), as airbench94 does.
TTA_SHIFTS = ((0, 0, 0.5), (-1, -1, 0.25), (1, 1, 0.25))


def flip_bits(n: int, seed: int) -> np.ndarray:
    """Each image's orientation in even epochs (True = mirrored); odd epochs show the other one."""
    return np.random.default_rng(seed).random(n) < 0.5


def flip(images: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Mirror the images (N, H, W, C) where `mask` (N,) is True."""
    return tf.where(mask[:, None, None, None], images[:, :, ::-1, :], images)


def random_offsets(n: tf.Tensor, pixels: int, seed: tf.Tensor | None = None) -> tf.Tensor:
    """(n, 2) crop offsets in [0, 2 * pixels]; stateless (reproducible) when a seed pair is given."""
    if seed is None:
        return tf.random.uniform([n, 2], 0, 2 * pixels + 1, dtype=tf.int32)
    return tf.random.stateless_uniform([n, 2], seed=seed, minval=0, maxval=2 * pixels + 1, dtype=tf.int32)


def translate(images: tf.Tensor, pixels: int, offsets: tf.Tensor) -> tf.Tensor:
    """Shift each image by up to `pixels` in x and y (its crop `offsets`), filling by reflection."""
    if pixels <= 0:
        return images
    size = tf.shape(images)[1]
    padded = tf.pad(images, [[0, 0], [pixels, pixels], [pixels, pixels], [0, 0]], mode="REFLECT")
    rows = offsets[:, :1] + tf.range(size)[None, :]
    cols = offsets[:, 1:] + tf.range(size)[None, :]
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def shift(images: tf.Tensor, dy: int, dx: int) -> tf.Tensor:
    """Every image moved by (dy, dx) pixels, filled by reflection (a TTA view)."""
    if dy == 0 and dx == 0:
        return images
    p = max(abs(dy), abs(dx))
    size = tf.shape(images)[1]
    padded = tf.pad(images, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
    return padded[:, p - dy:p - dy + size, p - dx:p - dx + size, :]


def tta_views(images: tf.Tensor) -> tuple[tf.Tensor, list[float]]:
    """The TTA views of a batch (N, H, W, C), stacked into one batch (V*N, ...), and each view's weight."""
    views, weights = [], []
    for dy, dx, w in TTA_SHIFTS:
        moved = shift(images, dy, dx)
        views += [moved, moved[:, :, ::-1, :]]
        weights += [w / 2, w / 2]
    return tf.concat(views, axis=0), weights


def tta_average(probs: tf.Tensor, weights: list[float]) -> tf.Tensor:
    """Weighted mean of per-view probabilities (V*N, C), as stacked by `tta_views`, -> (N, C)."""
    per_view = tf.reshape(probs, [len(weights), -1, tf.shape(probs)[-1]])
    return tf.tensordot(tf.constant(weights, probs.dtype), per_view, axes=1)
