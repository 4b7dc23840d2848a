"""The frozen-base feature cache.

While the base is frozen and images are not augmented, the base maps each image
to the same features every epoch. Computing them once and training the head on
them skips the expensive part of every epoch after the first.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np

from cifar_core.model import array_cache
from cifar_core.model.forward import Progress, forward_batches


def fits_cache(base: keras.Model, n_images: int) -> bool:
    """Whether the features of `n_images` images are small enough to keep (else the head phase trains on
    live images: e.g. 224x224 inputs)."""
    return int(np.prod(base.output.shape[1:])) * 4 * n_images <= array_cache.MAX_CACHE_BYTES


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
    progress: Progress | None = None,
) -> np.ndarray:
    """Run the frozen base once over `x` (uint8 images), with progress, returning float32 features."""
    return forward_batches(lambda images: keras.ops.convert_to_numpy(base(images, training=False)), x,
                           batch_size=batch_size, width=tuple(base.output.shape[1:]),
                           label="computing frozen-base features", input_size=input_size, progress=progress)


def cached_base_features(
    base: keras.Model,
    x: np.ndarray,
    *,
    input_size: int,
    cache_dir: Path,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> np.ndarray:
    """Features of `x` under `base`, read from `cache_dir` when this exact base and data were seen before."""
    return array_cache.cached_array(
        Path(cache_dir) / "features" / f"{fingerprint(base, input_size, x)}.npy",
        lambda: compute_base_features(base, x, input_size=input_size, batch_size=batch_size, progress=progress),
        rows=len(x))
