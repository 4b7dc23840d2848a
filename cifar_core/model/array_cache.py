"""The on-disk array cache: what a model computes over many images (frozen-base features, penultimate features,
2-D maps, similar-image descriptors, neighbour scans), kept as .npy files so that it is computed once.

Each caller names its file by everything the array depends on (the model or its weights, and the images),
so a file is never stale, only absent. Files are written atomically: a reader sees a whole array or none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from cifar_core.base.atomic_io import atomic_save_array

# Arrays beyond this size are not kept (e.g. the frozen base's features of 224x224 inputs): they would
# fill the disk faster than they save time. Training checks it before choosing the cached-feature path.
MAX_CACHE_BYTES = 3 << 30


def load_array(path: Path) -> np.ndarray | None:
    """The array saved at `path`, or None when it is absent or damaged (the caller computes it again)."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None


def save_array(path: Path, array: np.ndarray) -> None:
    """Keep `array` at `path` (written atomically) unless it exceeds MAX_CACHE_BYTES. A folder that
    cannot be written (read-only artifacts) or a full disk leaves it unsaved: the caller has it anyway."""
    if array.nbytes > MAX_CACHE_BYTES:
        return
    try:
        atomic_save_array(path, array)
    except OSError:
        pass


def cached_array(path: Path, compute: Callable[[], np.ndarray], *, rows: int, saved_dtype: type | None = None) -> np.ndarray:
    """The array saved at `path` when it has `rows` rows, else `compute()`, saved there (as `saved_dtype`,
    e.g. float16 to halve the file) for the next call. Returns what was read or computed."""
    saved = load_array(path)
    if saved is not None and len(saved) == rows:
        return saved
    array = compute()
    save_array(path, array if saved_dtype is None else array.astype(saved_dtype))
    return array
