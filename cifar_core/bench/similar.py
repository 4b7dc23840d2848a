"""`python -m cifar_core bench similar`: does the similar-images search find an altered training image's original?

Training images are altered the ways a copy of a photo usually differs from it (a
1-2 pixel shift with reflected edges, a horizontal flip, JPEG re-encoding at
quality 75) and searched among all the training images: how often the original
is the top-1 and within the top-5 neighbours. Test images (never trained on) show
how the similarities of ordinary neighbours spread, and how fast one query is.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cifar_core.analysis import similar
from cifar_core.model.forward import Progress

ALTERATIONS = ("shift", "flip", "jpeg")
JPEG_QUALITY = 75
PERCENTILES = (5, 25, 50, 75, 95)


def alter(images: np.ndarray, kind: str, seed: int = 0) -> np.ndarray:
    """Altered copies of uint8 images (N, 32, 32, 3): "shift" moves each by a random 1-2 pixels (x, y or
    both, edges reflected), "flip" mirrors it left-right, "jpeg" re-encodes it at JPEG_QUALITY."""
    if kind == "flip":
        return images[:, :, ::-1].copy()
    if kind == "jpeg":
        def reencode(image: np.ndarray) -> np.ndarray:
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, "JPEG", quality=JPEG_QUALITY)
            with Image.open(buf) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)

        return np.stack([reencode(image) for image in images]) if len(images) else images.copy()
    if kind == "shift":
        rng = np.random.default_rng(seed)
        padded = np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="reflect")
        h, w = images.shape[1:3]
        out = np.empty_like(images)
        for n in range(len(images)):
            dy = dx = 0
            while dy == dx == 0:  # a real shift, of at most 2 pixels along each axis
                dy, dx = rng.integers(-2, 3, size=2)
            out[n] = padded[n, 2 - dy:2 - dy + h, 2 - dx:2 - dx + w]
        return out
    raise ValueError(f"unknown alteration {kind!r}; use one of {', '.join(ALTERATIONS)}")


def _percentiles(values: np.ndarray) -> dict[str, float]:
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}


def _similarity_to(search: similar.SimilarSearch, images: np.ndarray, indexed: np.ndarray) -> np.ndarray:
    """The similarity the search gives each of `images` and the indexed image at `indexed` (same length)."""
    plain, mirrored = search.describer(images)
    target = search.index.unit[indexed]
    return np.maximum(np.sum(search.index.embed(plain) * target, axis=1), np.sum(search.index.embed(mirrored) * target, axis=1))


def _retrieval(search: similar.SimilarSearch, altered: np.ndarray, picked: np.ndarray, k: int) -> dict:
    """How often the altered copies of the training images `picked` find their original first, and in the top 5."""
    found = np.concatenate([search.search(batch, k)[0] for batch in
                            np.array_split(altered, max(1, -(-len(picked) // similar.BATCH)))])
    return {"top1": float(np.mean(found[:, 0] == picked)),
            "top5": float(np.mean((found[:, :5] == picked[:, None]).any(axis=1))),
            # what the pages would show beside the original
            "similarity_to_original": _percentiles(_similarity_to(search, altered, picked))}


def _query_seconds(search: similar.SimilarSearch, x_test: np.ndarray, picked: np.ndarray, timed: int, shown: int) -> list[float]:
    """Wall time of each single-image search of the first `timed` test images `picked`, after warming up on five."""
    for i in picked[:5]:  # warm-up: the first calls trace and allocate
        search.search(x_test[[i]], shown)
    times = []
    for i in picked[:timed]:
        t0 = time.perf_counter()
        search.search(x_test[[i]], shown)
        times.append(time.perf_counter() - t0)
    return times


def bench_similar(model_path: Path, x_train: np.ndarray, x_test: np.ndarray, y_train: np.ndarray | None = None,
                  y_test: np.ndarray | None = None, *, queries: int = 500, test_queries: int = 1000, k: int = 5,
                  shown: int = 8, timed: int = 100, seed: int = 0, progress: Progress | None = None) -> dict:
    """Retrieval of altered training images, spread of test images' similarities, and query latency (one JSON-able dict).

    `queries` training images (seeded sample) are altered each way and searched among all of `x_train`;
    `test_queries` test images give the similarities of their `shown` nearest training images (as the
    pages show) and, with labels, how many of those share the test image's class; `timed` single-image
    searches (descriptor of the image and its mirror, then the search) give the latency.
    """
    from cifar_core.model.vgg import load_model

    model = load_model(model_path)
    cached = similar.descriptors_cached(model_path, x_train)
    start = time.perf_counter()
    search = similar.SimilarSearch(model_path, x_train, model=model, progress=progress)
    index_s = time.perf_counter() - start

    rng = np.random.default_rng(seed)
    picked = rng.choice(len(x_train), min(queries, len(x_train)), replace=False)
    retrieval = {kind: _retrieval(search, alter(x_train[picked], kind, seed), picked, k) for kind in ALTERATIONS}
    test_picked = rng.choice(len(x_test), min(test_queries, len(x_test)), replace=False)
    idx, sims = zip(*(search.search(x_test[batch], shown) for batch in
                      np.array_split(test_picked, max(1, -(-len(test_picked) // similar.BATCH)))))
    idx, sims = np.concatenate(idx), np.concatenate(sims)
    spread, top1_spread = _percentiles(sims), _percentiles(sims[:, 0])

    times = _query_seconds(search, x_test, test_picked, timed, shown)
    result = {
        "model": str(model_path),
        "train_images": int(len(x_train)),
        "descriptor_dim": int(search.index.mean.shape[0]),
        "index_dim": int(search.index.unit.shape[1]),  # after the PCA projection, when the index has one
        "altered_queries": int(len(picked)),
        "retrieval": retrieval,
        "test_queries": int(len(test_picked)),
        f"test_top{shown}_similarity": spread,
        "test_top1_similarity": top1_spread,
        "query_ms_p50": round(float(np.median(times) * 1000), 2),
        "query_ms_p90": round(float(np.percentile(times, 90) * 1000), 2),
        "descriptors_were_cached": bool(cached),
        "index_s": round(index_s, 1),  # the feature pass over x_train when not cached, else reading it
    }
    if y_train is not None and y_test is not None:
        result[f"test_top{shown}_same_class"] = round(float(np.mean(y_train[idx] == y_test[test_picked][:, None])), 3)
    return result
