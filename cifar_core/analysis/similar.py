"""Similar training images: a search on features that keep which image it is, not only its class.

The penultimate features a classifier decides on collapse by class (a random test
and training image of the shipped model reach cosine 0.97), so a search there
returns "some image of the same class". Here an image is described by the
model's mid-level "layout" map (`embeddings.layout_layer`, block3_pool: 4x4x128
at 32 px) averaged down to 2x2 cells (512 numbers): where colours and shapes
are, which a 1-2 pixel shift or JPEG re-encoding barely moves. Descriptors are
centred on the mean of the training images' ones, projected on their 256 main
directions (PCA) and scaled to unit length, so the cosine similarity spreads out
instead of sitting near 1. A query is also
searched as its mirror image and each training image keeps the better of the two
similarities, so a mirrored copy is found like the original.

The choice was measured with `python -m cifar_core bench similar`'s protocol in
a one-off comparison on the shipped model: whitening the flattened 4x4 map, or
keeping it whole (2048 numbers), found altered originals no more often; the
256-dimension projection found them as often as the 512 numbers; block4 and
deeper maps found them less often and bunched the similarities of unrelated
images near 1. The README has the chosen search's numbers.
The training images' descriptors are computed once per model and kept on disk
(float16) beside its other features.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from cifar_core.analysis import embeddings
from cifar_core.model import array_cache
from cifar_core.model.forward import Progress, forward_batches

GRID = 2  # cells per side the layout map is averaged to
DIM = 256  # dimensions kept by the index's PCA projection
PCA_MIN_FACTOR = 4
PCA_SAMPLE = 10_000  # images the projection is fitted on (seeded): enough for 512 numbers, in a second
BATCH = 500


def descriptor_model(model: keras.Model) -> keras.Model:
    """preprocessed image -> its descriptor before centring: the layout map averaged to GRID x GRID cells,
    flattened. Models without the studio's `base` part use their penultimate features."""
    import tensorflow as tf

    try:
        base = model.get_layer("base")
    except ValueError:
        return embeddings.feature_model(model)
    layout = keras.Model(base.input, base.get_layer(embeddings.layout_layer(base)).output)
    inputs = keras.Input(model.input_shape[1:])
    cells = keras.layers.Lambda(lambda m: tf.image.resize(tf.cast(m, tf.float32), (GRID, GRID), method="area"))(
        layout(inputs, training=False))
    return keras.Model(inputs, keras.layers.Flatten()(cells))


class Describer:
    """Descriptors of uint8 images (N, 32, 32, 3), and of their mirror images, traced once for any batch size."""

    def __init__(self, model: keras.Model):
        import tensorflow as tf

        from cifar_core.data.images import NATIVE_SIZE
        from cifar_core.data.pipeline import preprocess

        extractor, size = descriptor_model(model), int(model.input_shape[1])

        signature = [tf.TensorSpec([None, NATIVE_SIZE, NATIVE_SIZE, 3], tf.uint8)]
        self._plain = tf.function(lambda images: extractor(preprocess(images, size), training=False), input_signature=signature)
        # The images, then their mirrors, in one batch: one call for a query and its mirror.
        self._both = tf.function(lambda images: extractor(preprocess(tf.concat([images, images[:, :, ::-1]], axis=0), size),
                                                          training=False), input_signature=signature)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(descriptors, descriptors of the mirror images), each (N, D) float32."""
        out = np.asarray(self._both(np.asarray(images, np.uint8)), dtype=np.float32)
        return out[:len(images)], out[len(images):]

    def plain(self, images: np.ndarray, progress: Progress | None = None) -> np.ndarray:
        """Descriptors of many images (no mirrors), in batches."""
        return forward_batches(lambda batch: self._plain(np.asarray(batch, np.uint8)), images, batch_size=BATCH, width=(0,),
                               label="computing similar-image descriptors", progress=progress)


class SimilarIndex:
    """Exact cosine search over the training images' descriptors: centred, projected on their DIM main
    directions (PCA), unit length.

    The projection halves the memory and time of a query (a query reads every indexed row) and found
    altered originals as often as the full descriptors (README). It is fitted only on more than
    PCA_MIN_FACTOR x DIM images: on fewer it would drop what a query does not share with them.
    """

    def __init__(self, descriptors: np.ndarray):
        d = np.asarray(descriptors, dtype=np.float32)
        self.mean = d.mean(axis=0)
        centred = d - self.mean
        self.projection = None
        if len(d) > PCA_MIN_FACTOR * DIM and d.shape[1] > DIM:
            sample = centred[np.random.default_rng(0).choice(len(d), min(len(d), PCA_SAMPLE), replace=False)]
            values, vectors = np.linalg.eigh(sample.T @ sample)
            self.projection = np.ascontiguousarray(vectors[:, np.argsort(-values)[:DIM]])
        self.unit = self.embed(d)

    def embed(self, descriptors: np.ndarray) -> np.ndarray:
        """Descriptors as the index compares them: centred, projected, unit rows (a dot product is the similarity)."""
        centred = np.atleast_2d(descriptors) - self.mean
        return embeddings.unit_rows(centred if self.projection is None else centred @ self.projection)

    def __len__(self) -> int:
        return len(self.unit)

    def query(self, descriptors: np.ndarray, mirrored: np.ndarray | None = None, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The `k` most similar indexed images to each query row: (indices (Q, k), cosine similarities (Q, k)).

        With `mirrored` (the descriptors of the queries' mirror images), an indexed image scores the
        better of its similarities to a query and to its mirror.
        """
        q = np.atleast_2d(descriptors)
        both = q if mirrored is None else np.concatenate([q, np.atleast_2d(mirrored)])
        sims = self.embed(both) @ self.unit.T  # one pass over the index for a query and its mirror
        if mirrored is not None:
            sims = np.maximum(sims[:len(q)], sims[len(q):])
        k = min(k, len(self))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sim = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sim, order, axis=1)


def cached_descriptors(model_path: Path, x: np.ndarray, *, model: keras.Model | None = None,
                       describer: Describer | None = None, progress: Progress | None = None) -> np.ndarray:
    """The descriptors of training images `x` under the model at `model_path`: read from disk, or computed
    once and saved (float16 halves the file; the search itself runs in float32)."""

    def compute() -> np.ndarray:
        from cifar_core.model.vgg import load_model

        if describer is not None:
            return describer.plain(x, progress)
        return Describer(model if model is not None else load_model(model_path)).plain(x, progress)

    return array_cache.cached_array(embeddings.cache_file(model_path, f"similar-g{GRID}-train", x), compute, rows=len(x),
                                    saved_dtype=np.float16).astype(np.float32)


def descriptors_cached(model_path: Path, x: np.ndarray) -> bool:
    """Whether `cached_descriptors` would read from disk (so a caller can say a first pass is coming)."""
    return embeddings.cache_file(model_path, f"similar-g{GRID}-train", x).is_file()


class SimilarSearch:
    """A model's search over its training images: images in, nearest training images out."""

    def __init__(self, model_path: Path, x_train: np.ndarray, *, model: keras.Model | None = None,
                 progress: Progress | None = None):
        if model is None:
            from cifar_core.model.vgg import load_model

            model = load_model(model_path)
        self.describer = Describer(model)
        self.index = SimilarIndex(cached_descriptors(model_path, x_train, describer=self.describer, progress=progress))

    def __len__(self) -> int:
        return len(self.index)

    def search(self, images: np.ndarray, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The `k` training images most similar to each uint8 image (N, 32, 32, 3): (indices, similarities)."""
        return self.index.query(*self.describer(images), k=k)
