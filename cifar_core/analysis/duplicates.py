"""Near duplicates within the test set, and train/test leaks: image pairs whose features nearly coincide.

The features are the model's "layout" features (`embeddings.feature_model`: a
mid-level feature map that still keeps where things are in the image), not the
penultimate ones, which a trained classifier collapses by class. Each test
image's K nearest test images and K nearest training images (exact cosine
search) are found once and kept on disk beside the model's features; any
threshold is then a filter over them, so the dashboard's slider is instant. A
pair is counted when its cosine similarity is at least the threshold; an image
with more than K such partners contributes its K closest (the counts are exact
whenever no image has more than K near copies).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cifar_core.analysis import embeddings
from cifar_core.model import array_cache
from cifar_core.model.forward import Progress

K = 5
# Cosine similarity of layout features from which two images are called near
# duplicates. Chosen by looking at the shipped model's pairs (README, "Error
# analysis"): above it nearly all are the same photo re-cropped or re-coloured;
# below ~0.85 about half are merely similar photos. The dashboard and
# `inspect --threshold` change it.
DEFAULT_THRESHOLD = 0.90


@dataclass
class NeighbourScan:
    """For every test image: its K nearest other test images and K nearest training images."""

    test_idx: np.ndarray
    test_sim: np.ndarray
    train_idx: np.ndarray
    train_sim: np.ndarray


def scan(test_features: np.ndarray, train_features: np.ndarray, k: int = K) -> NeighbourScan:
    """Exact nearest neighbours of each test image among the test and the training images."""
    test = embeddings.unit_rows(test_features)
    test_idx, test_sim = embeddings.nearest(test, test, k, exclude_self=True)
    train_idx, train_sim = embeddings.nearest(test, embeddings.unit_rows(train_features), k)
    return NeighbourScan(test_idx, test_sim, train_idx, train_sim)


def cached_scan(model_path: Path, x_test: np.ndarray, x_train: np.ndarray, *, model=None, k: int = K,
                progress: Progress | None = None) -> NeighbourScan:
    """`scan` over the model's layout features, kept beside its other features.

    The layout features themselves are not kept (they are large); the scan is what is reused.
    """
    path = _scan_file(model_path, x_test, x_train, k)
    stacked = array_cache.load_array(path)
    if stacked is not None and stacked.shape[:2] == (4, len(x_test)):
        test_idx, test_sim, train_idx, train_sim = stacked
        return NeighbourScan(test_idx.astype(np.int64), test_sim.astype(np.float32), train_idx.astype(np.int64), train_sim.astype(np.float32))
    if model is None:
        from cifar_core.model.vgg import load_model

        model = load_model(model_path)
    test = embeddings.compute_embeddings(model, x_test, progress, kind="layout")
    train = embeddings.compute_embeddings(model, x_train, progress, kind="layout")
    result = scan(test, train, k)
    if result.test_idx.shape == result.train_idx.shape:  # one array on disk needs equal shapes
        # float64 holds the indices exactly
        array_cache.save_array(path, np.stack([result.test_idx, result.test_sim, result.train_idx, result.train_sim]).astype(np.float64))
    return result


def scan_cached(model_path: Path, x_test: np.ndarray, x_train: np.ndarray, k: int = K) -> bool:
    """Whether `cached_scan` would read its result from disk rather than compute every image's features."""
    return _scan_file(model_path, x_test, x_train, k).is_file()


def _scan_file(model_path: Path, x_test: np.ndarray, x_train: np.ndarray, k: int) -> Path:
    return embeddings.cache_file(model_path, f"duplicates-k{k}-{embeddings.data_key(x_train)}", x_test)


def duplicate_pairs(result: NeighbourScan, threshold: float) -> pd.DataFrame:
    """Pairs of test images (a < b) at least `threshold` similar, most similar first."""
    rows, cols = np.nonzero(result.test_sim >= threshold)
    a, b = result.test_idx[rows, cols], rows
    pairs = pd.DataFrame({"a": np.minimum(a, b), "b": np.maximum(a, b), "similarity": result.test_sim[rows, cols]})
    pairs = pairs.drop_duplicates(["a", "b"])
    return pairs.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)


def leak_pairs(result: NeighbourScan, threshold: float) -> pd.DataFrame:
    """(test image, training image) pairs at least `threshold` similar, most similar first."""
    rows, cols = np.nonzero(result.train_sim >= threshold)
    pairs = pd.DataFrame({"test": rows, "train": result.train_idx[rows, cols], "similarity": result.train_sim[rows, cols]})
    return pairs.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)


def counts(result: NeighbourScan, threshold: float) -> dict[str, int]:
    """The numbers the CLI and the dashboard report at `threshold`."""
    leaks = leak_pairs(result, threshold)
    return {
        "test_duplicate_pairs": int(len(duplicate_pairs(result, threshold))),
        "train_test_leak_pairs": int(len(leaks)),
        "leaked_test_images": int(leaks["test"].nunique()),
    }
