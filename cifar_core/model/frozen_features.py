"""The frozen-base feature cache.

While the base is frozen and images are not augmented, the base maps each image
to the same features every epoch. Computing them once and training the head on
them skips the expensive part of every epoch after the first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from cifar_core.base.atomic_io import atomic_save_array
from cifar_core.data.pipeline import image_batches

# Features beyond this size are not cached (e.g. 224x224 inputs); the head phase
# then trains on live images instead.
MAX_CACHE_BYTES = 3 << 30


def feature_bytes(base: keras.Model, n_images: int) -> int:
    return int(np.prod(base.output.shape[1:])) * 4 * n_images


def fingerprint(base: keras.Model, input_size: int, x: np.ndarray) -> str:
    """A key covering the base's weights and precision, its cut (output shape), the input size and the images."""
    # The dtype policy too: a bf16 base computes other features from the same float32 weights.
    h = hashlib.sha1(f"{base.name}|{base.dtype_policy.name}|{base.output.shape}|{input_size}|{x.shape}".encode())
    for w in base.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:20]


def compute_base_features(
    base: keras.Model,
    x: np.ndarray,
    *,
    input_size: int,
    batch_size: int = 256,
    progress: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Run the frozen base once over `x` (uint8 images), with progress, returning float32 features."""
    forward = keras.ops.convert_to_numpy
    out, done = [], 0
    for images in image_batches(x, batch_size, input_size=input_size):
        out.append(np.asarray(forward(base(images, training=False)), dtype=np.float32))
        done += len(out[-1])
        if progress:
            progress(done, len(x), "computing frozen-base features")
    return np.concatenate(out) if out else np.zeros((0, *base.output.shape[1:]), np.float32)


def cached_base_features(
    base: keras.Model,
    x: np.ndarray,
    *,
    input_size: int,
    cache_dir: Path,
    batch_size: int = 256,
    progress: Callable[[int, int, str], None] | None = None,
) -> np.ndarray:
    """Features of `x` under `base`, read from `cache_dir` when this exact base and data were seen before."""
    path = Path(cache_dir) / "features" / f"{fingerprint(base, input_size, x)}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    feats = compute_base_features(base, x, input_size=input_size, batch_size=batch_size, progress=progress)
    atomic_save_array(path, feats)
    return feats
