"""What the model sees: penultimate-layer features, their 2-D map, and exact nearest neighbours.

The features are the input of the classifier's last Dense layer (after dropout,
which is off at inference), i.e. the space the final decision is made in. They
are computed once per model and data and kept on disk: in a run's folder beside
its predictions, or for any other model (the shipped one) under
`artifacts/cache/embeddings/`, keyed by the model file and the images.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import keras
import numpy as np

from cifar_core.base.paths import cache_dir, default_model_dir
from cifar_core.model import array_cache
from cifar_core.model.forward import Progress, forward_batches

BATCH = 500
PROJECTIONS = ("pca", "umap")
LAYOUT_MIN_SIZE = 4


def umap_available() -> bool:
    """Whether `umap-learn` is installed (UMAP maps are optional; PCA always works)."""
    import importlib.util

    return importlib.util.find_spec("umap") is not None


# ---------------------------------------------------------------- features


def feature_model(model: keras.Model) -> keras.Model:
    """image -> penultimate features: the input of the final classification layer, the space the decision is
    made in (the map); it collapses by class (unrelated images of one class reach cosine 0.999), so similar
    images are found on other features (`similar`, over `layout_layer`'s map).

    Models without the studio's `image -> base -> head` parts use their last layer's input.
    """
    try:
        base, head = model.get_layer("base"), model.get_layer("head")
    except ValueError:
        return keras.Model(model.input, model.layers[-1].input)
    inputs = keras.Input(model.input_shape[1:])
    inner = keras.Model(head.input, head.layers[-1].input)
    return keras.Model(inputs, inner(base(inputs, training=False), training=False))


def layout_layer(base: keras.Model) -> str:
    """The deepest pooling layer of `base` whose map is at least LAYOUT_MIN_SIZE wide (else the first one)."""
    pools = [layer for layer in base.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    wide = [layer for layer in pools if layer.output.shape[1] >= LAYOUT_MIN_SIZE]
    return (wide or pools)[-1].name


def compute_embeddings(model: keras.Model, x: np.ndarray, progress: Progress | None = None) -> np.ndarray:
    """Float32 penultimate features (N, D) of uint8 images `x` (N, 32, 32, 3), in batches."""
    extractor = feature_model(model)
    return forward_batches(extractor.predict_on_batch, x, batch_size=BATCH, width=(int(extractor.output.shape[-1]),),
                           label="computing features", input_size=int(model.input_shape[1]), progress=progress)


# ---------------------------------------------------------------- the disk cache


def model_key(model_path: Path) -> str:
    """Names one version of a model file: its resolved path, size and modification time."""
    st = Path(model_path).stat()
    return hashlib.sha1(f"{Path(model_path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]


def data_key(x: np.ndarray) -> str:
    """Names a set of images by their pixels (so a re-decoded or re-ordered folder is a new key)."""
    h = hashlib.blake2b(str(x.shape).encode(), digest_size=8)
    h.update(np.ascontiguousarray(x).data)
    return h.hexdigest()


def run_folder(model_path: Path) -> Path | None:
    """The model's own writable run folder (one holding its saved predictions), else None.

    The shipped model's folder is never written to, nor the folder of an arbitrary .keras file.
    """
    folder = Path(model_path).resolve().parent
    if (folder / "test_probs.npz").is_file() and folder != default_model_dir().resolve() and os.access(folder, os.W_OK):
        return folder
    return None


def cache_folder(model_path: Path) -> Path:
    """Where a model's features live: beside its predictions in its run folder, else in the shared cache."""
    own = run_folder(model_path)
    return own / "embeddings" if own else cache_dir() / "embeddings" / model_key(model_path)


def cache_file(model_path: Path, name: str, x: np.ndarray) -> Path:
    """The cache file for `name` (e.g. 'features-test') of this model version and these images."""
    return cache_folder(model_path) / f"{name}-{model_key(model_path)}-{data_key(x)}.npy"


def cached_embeddings(model_path: Path, x: np.ndarray, split: str, *, model: keras.Model | None = None,
                    progress: Progress | None = None) -> np.ndarray:
    """Features of `x` under the model at `model_path`: read from disk, or computed once and saved."""

    def compute() -> np.ndarray:
        from cifar_core.model.vgg import load_model

        return compute_embeddings(model if model is not None else load_model(model_path), x, progress)

    return array_cache.cached_array(cache_file(model_path, f"features-{split}", x), compute, rows=len(x))


def embeddings_cached(model_path: Path, x: np.ndarray, split: str) -> bool:
    """Whether `cached_embeddings` would read from disk (so a page can say a first pass is coming)."""
    return cache_file(model_path, f"features-{split}", x).is_file()


# ---------------------------------------------------------------- the 2-D map


def project(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """A 2-D map (N, 2) of the features for cosine geometry: PCA of the unit rows, or UMAP with the
    cosine metric (when `umap-learn` is installed)."""
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; use one of {', '.join(PROJECTIONS)}")
    if len(features) < 3:
        return np.zeros((len(features), 2), np.float32)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(features) - 1), metric="cosine",
                            random_state=seed, n_jobs=1)  # a seed makes UMAP single-threaded anyway
        return np.asarray(reducer.fit_transform(features), dtype=np.float32)
    from sklearn.decomposition import PCA

    # On unit rows, as the neighbour search sees them: raw penultimate features spread along a few
    # confident classes' directions, and their PCA squeezes every other class into one blob.
    return np.asarray(PCA(n_components=2, random_state=seed).fit_transform(unit_rows(features)), dtype=np.float32)


def cached_projection(model_path: Path, x: np.ndarray, split: str, features: np.ndarray, method: str = "pca") -> np.ndarray:
    """`project(features, method)`, kept on disk beside the features (UMAP takes a while)."""
    return array_cache.cached_array(cache_file(model_path, f"map-{method}-{split}", x), lambda: project(features, method),
                                    rows=len(features))


# ---------------------------------------------------------------- nearest neighbours


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so a dot product is the cosine similarity."""
    f = np.asarray(features, dtype=np.float32)
    return f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12)


def nearest(queries: np.ndarray, refs: np.ndarray, k: int, *, exclude_self: bool = False,
            chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine nearest neighbours: (indices (Q, k), similarities (Q, k)), most similar first.

    `queries` and `refs` must be unit rows. With `exclude_self`, queries are refs
    (same order) and each row skips itself. Chunked, so memory stays at chunk x len(refs).
    """
    k = min(k, len(refs) - exclude_self)
    idx = np.zeros((len(queries), max(k, 0)), np.int64)
    sim = np.zeros((len(queries), max(k, 0)), np.float32)
    if k <= 0:
        return idx, sim
    for start in range(0, len(queries), chunk):
        s = queries[start:start + chunk] @ refs.T
        if exclude_self:
            rows = np.arange(len(s))
            s[rows, start + rows] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(s, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        idx[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        sim[start:start + chunk] = np.take_along_axis(top_sim, order, axis=1)
    return idx, sim

