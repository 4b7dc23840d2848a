"""Train, validation and test splits of decoded images: stratified and seeded, so a run can be repeated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cifar_core.data.images import ImageData


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (held_out, rest): `fraction` of each class held out, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    held, rest = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        held.append(idx[:n])
        rest.append(idx[n:])
    return np.sort(np.concatenate(held)), np.sort(np.concatenate(rest))


def limit_per_class(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first `n` images of each class, in their original order."""
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in np.unique(y)])
    return np.sort(keep)


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def make_splits(data: ImageData, *, val_fraction: float, seed: int, limit: int | None = None) -> Splits:
    """Train/val/test. Val is a stratified, seeded part of train; test is kept for final evaluation."""
    x, y = data.x_train, data.y_train
    if limit:
        keep = limit_per_class(y, limit)
        x, y = x[keep], y[keep]
    val_idx, train_idx = stratified_split(y, val_fraction, seed)
    return Splits(x[train_idx], y[train_idx], x[val_idx], y[val_idx], data.x_test, data.y_test, data.class_names)
