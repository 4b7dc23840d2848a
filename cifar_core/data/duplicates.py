"""Exact and near duplicates within and across a dataset's splits: the one finder behind the Data page's health
report, `data check`, Error analysis's "Duplicates and leaks" tab and `inspect`.

Every image is compared as the studio sees it: its 32x32 RGB decode (`images.native_pixels`), so the health
report (which reads files) and the pages (which read the decoded arrays) find the same pairs.

  exact  the same 32x32 RGB pixels.
  near   different pixels, but the same picture: imagehash's perceptual hash (pHash: the signs of the 8x8
         lowest frequencies of the grey image's DCT against their median) differs in at most HASH_RADIUS of its
         64 bits AND the grey images correlate (Pearson, over all 1,024 pixels) at MIN_CORRELATION or more.
         The hash alone pairs pictures with the same coarse layout (a ship on the sea and a plane in the sky; a
         one and an eight on the digits); the pixel check asks the whole picture to agree, while still accepting a
         re-encoded, brightened or recoloured copy. Flat pictures (grey range below FLAT_RANGE) have no structure
         to compare and only ever pair exactly.
The thresholds were chosen on CIFAR-10 and scikit-learn's digits, looking at the pairs (README, "Duplicates").

A leak is a test image with an exact or near copy in train: its test score then partly measures memory.

Counts are of images: "within train" are training images with a copy elsewhere in train, "across" test images
with a copy in train. An image with both kinds of copy counts as exact.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

Progress = Callable[[int, int, str], None]

HASH_RADIUS = 6
MIN_CORRELATION = 0.90
FLAT_RANGE = 8  # grey levels (0-255) between the darkest and the brightest pixel below which a picture is flat
_HASH_SIDE, _LOW = 32, 8  # imagehash.phash's defaults: a 32x32 grey image, its 8x8 lowest frequencies
_ROWS, _COLS = 64, 4096  # the tile of hash comparisons made at once: small enough for the CPU's cache
KINDS = ("exact", "near")
RELATIONS = ("within_train", "within_test", "across")


@dataclass
class Prints:
    """What the finder keeps of each image: a digest of its pixels, its pHash and its grey picture."""

    digest: np.ndarray  # (N,) bytes: BLAKE2 of the 32x32 RGB pixels
    phash: np.ndarray  # (N,) uint64
    grey: np.ndarray  # (N, 32, 32) uint8, as Pillow's convert("L")

    def __len__(self) -> int:
        return len(self.phash)

    @staticmethod
    def concat(parts: list[Prints]) -> Prints:
        if not parts:
            return prints(np.zeros((0, _HASH_SIDE, _HASH_SIDE, 3), np.uint8))
        return Prints(*(np.concatenate([getattr(p, name) for p in parts]) for name in ("digest", "phash", "grey")))


def prints(x: np.ndarray) -> Prints:
    """The prints of uint8 RGB images (N, 32, 32, 3)."""
    x = np.ascontiguousarray(x, dtype=np.uint8)
    digest = np.array([hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in x], dtype="S16")
    grey = _luma(x)
    return Prints(digest, phash(grey), grey)


def _luma(x: np.ndarray) -> np.ndarray:
    """Pillow's RGB to L conversion (ITU-R 601-2 luma in 16-bit fixed point), for a batch."""
    out = np.empty(x.shape[:-1], np.uint8)
    weights = np.array([19595, 38470, 7471], np.uint32)
    for start in range(0, len(x), 1024):  # a block at a time: 32-bit copies of every pixel would be large
        block = x[start:start + 1024].astype(np.uint32)
        out[start:start + 1024] = (block @ weights + 0x8000) >> 16
    return out


def phash(grey: np.ndarray) -> np.ndarray:
    """imagehash.phash of each 32x32 grey image, as a uint64 (its 8x8 bits row by row, the first one highest).

    The same arithmetic as imagehash (scipy's DCT-II over rows, then columns) for a whole batch at once:
    imagehash's one image at a time through Pillow takes minutes on CIFAR-10; a test checks they agree.
    """
    from scipy import fftpack

    if grey.shape[1:] != (_HASH_SIDE, _HASH_SIDE):
        raise ValueError(f"pHash needs {_HASH_SIDE}x{_HASH_SIDE} grey images, got {grey.shape[1:]}")
    out = np.zeros(len(grey), np.uint64)
    for start in range(0, len(grey), 4096):  # bounded memory: float64 coefficients of 4,096 images at a time
        pixels = grey[start:start + 4096].astype(np.float64)
        low = fftpack.dct(fftpack.dct(pixels, axis=1), axis=2)[:, :_LOW, :_LOW].reshape(len(pixels), -1)
        bits = low > np.median(low, axis=1, keepdims=True)
        out[start:start + len(pixels)] = np.packbits(bits, axis=1).view(">u8")[:, 0]
    return out


@dataclass
class Found:
    """The duplicates of a dataset of `n_train` training and `n_test` test images (indices: train first, then test).

    `pairs`: one row per pair shown (exact copies in one split are paired with the first one; near pairs and copies
    across the splits between the first image of each picture in each split): int arrays `a`, `b` (a < b), and
    `kind` (0 exact, 1 near), `similarity` (the grey pixels' correlation; 1 for exact copies). `copies[relation]`: per image 0 (none), 1 (exact) or 2 (near): whether it has a copy
    in that relation (within_train and within_test: in its own split; across: a test image's copy in train).
    """

    n_train: int
    pairs: dict[str, np.ndarray]
    copies: dict[str, np.ndarray]

    def counts(self) -> dict:
        """{"exact": {relation: images}, "near": {...}, "leaked_test_images": test images with a copy in train}."""
        out = {kind: {rel: int((self.copies[rel] == code).sum()) for rel in RELATIONS} for code, kind in enumerate(KINDS, 1)}
        out["leaked_test_images"] = int((self.copies["across"] > 0).sum())
        return out

    def leak_pairs(self) -> pd.DataFrame:
        """(test, train, kind, similarity) of the pairs across the splits, indices within each split, most similar first."""
        a, b = self.pairs["a"], self.pairs["b"]
        across = (a < self.n_train) & (b >= self.n_train)  # a < b: the training image comes first
        return self._table(across, {"test": b[across] - self.n_train, "train": a[across]})

    def test_pairs(self) -> pd.DataFrame:
        """(a, b, kind, similarity) of the pairs within the test split, indices within it, most similar first."""
        inside = self.pairs["a"] >= self.n_train
        return self._table(inside, {"a": self.pairs["a"][inside] - self.n_train, "b": self.pairs["b"][inside] - self.n_train})

    def _table(self, rows: np.ndarray, columns: dict) -> pd.DataFrame:
        table = pd.DataFrame({**columns, "kind": np.asarray(KINDS)[self.pairs["kind"][rows]], "similarity": self.pairs["similarity"][rows]})
        return table.sort_values("similarity", ascending=False, kind="stable").reset_index(drop=True)

    def ordered_pairs(self) -> list[tuple[str, int, int]]:
        """(kind, a, b) of every pair, leaks first, then pairs within test, then within train; exact before near."""
        a, b, kind = self.pairs["a"], self.pairs["b"], self.pairs["kind"]
        test_a, test_b = a >= self.n_train, b >= self.n_train
        group = np.where(test_a != test_b, 0, np.where(test_a, 1, 2))
        order = np.lexsort((b, a, kind, group))
        return [(KINDS[kind[i]], int(a[i]), int(b[i])) for i in order]


def count_rows(counts: dict) -> list[dict]:
    """The counts as the pages' table: one row per kind, a column per relation."""
    return [{"kind": kind, "training images with a copy in train": counts[kind]["within_train"],
             "test images with a copy in test": counts[kind]["within_test"],
             "test images with a copy in train (leak)": counts[kind]["across"]} for kind in KINDS]


RULE = (f"Exact: the same 32×32 pixels. Near: pHash (imagehash) within {HASH_RADIUS} of 64 bits and grey pixels "
        f"correlated at {MIN_CORRELATION:.2f} or more: the same picture re-encoded, brightened or recoloured.")


def find(train: Prints, test: Prints, progress: Progress | None = None) -> Found:
    """The exact and near duplicates within and across the two splits (see the module docstring)."""
    both = Prints.concat([train, test])
    n, n_train = len(both), len(train)
    split = (np.arange(n) >= n_train).astype(np.int64)
    pictures, group = np.unique(both.digest, return_inverse=True)
    group = group.reshape(-1)
    key = group * 2 + split  # a picture in a split
    first = _first_index(key, 2 * len(pictures))
    rep = first[key]  # the first image of its picture in its split
    same_split = np.bincount(key, minlength=2 * len(pictures))[key] >= 2
    kept = np.flatnonzero(rep == np.arange(n))
    in_both = (first[0::2] >= 0) & (first[1::2] >= 0)
    exact_a, exact_b = first[0::2][in_both], first[1::2][in_both]  # (training image, test image) of one picture
    near_a, near_b, near_r = _near(both, kept, group, progress)

    copies = {rel: np.zeros(n, np.int8) for rel in RELATIONS}
    near_same = np.zeros(n, bool)  # per kept image: a near copy in its own split
    near_train = np.zeros(n, bool)  # per kept test image: a near copy in train
    for u, v in ((near_a, near_b), (near_b, near_a)):
        near_same[u[split[u] == split[v]]] = True
        near_train[u[(split[u] == 1) & (split[v] == 0)]] = True
    exact_train = np.zeros(n, bool)
    exact_train[exact_b] = True  # exact_b: the test side of each exact pair across
    within = np.where(same_split, 1, np.where(near_same[rep], 2, 0)).astype(np.int8)
    copies["within_train"][:n_train] = within[:n_train]
    copies["within_test"][n_train:] = within[n_train:]
    copies["across"][n_train:] = np.where(exact_train[rep], 1, np.where(near_train[rep], 2, 0))[n_train:]

    copied = np.flatnonzero(rep != np.arange(n))
    a = np.concatenate([rep[copied], exact_a, near_a])
    b = np.concatenate([copied, exact_b, near_b])
    kind = np.concatenate([np.zeros(len(copied) + len(exact_a), np.int8), np.ones(len(near_a), np.int8)])
    similarity = np.concatenate([np.ones(len(copied) + len(exact_a)), near_r])
    low, high = np.minimum(a, b), np.maximum(a, b)
    return Found(n_train, {"a": low.astype(np.int64), "b": high.astype(np.int64), "kind": kind, "similarity": similarity}, copies)


def find_in_arrays(x_train: np.ndarray, x_test: np.ndarray, progress: Progress | None = None) -> Found:
    """`find` over decoded images (uint8 RGB, N x 32 x 32 x 3)."""
    return find(prints(x_train), prints(x_test), progress)


def _first_index(key: np.ndarray, size: int) -> np.ndarray:
    """For each key value below `size`, the first index holding it (-1 for values no index holds)."""
    first = np.full(size, -1, np.int64)
    order = np.arange(len(key))[::-1]
    first[key[order]] = order  # later writes win: the reversed order leaves each value's first index
    return first


def _near(both: Prints, kept: np.ndarray, group: np.ndarray, progress: Progress | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Near pairs among the `kept` images (one per picture and split): pHash within HASH_RADIUS, then the pixel check."""
    grey = both.grey.reshape(len(both), _HASH_SIDE * _HASH_SIDE)
    structured = kept[(grey[kept].max(axis=1).astype(np.int16) - grey[kept].min(axis=1)) >= FLAT_RANGE]
    hashes = both.phash[structured]
    found_a, found_b = [], []
    xor, bits, close = np.empty((_ROWS, _COLS), np.uint64), np.empty((_ROWS, _COLS), np.uint8), np.empty((_ROWS, _COLS), bool)
    for start in range(0, len(structured), _ROWS):
        rows = hashes[start:start + _ROWS]
        for col in range(start, len(structured), _COLS):
            cols = hashes[col:col + _COLS]
            tile = (slice(0, len(rows)), slice(0, len(cols)))
            np.bitwise_xor(rows[:, None], cols[None, :], out=xor[tile])  # into reused buffers: this loop is the cost
            np.bitwise_count(xor[tile], out=bits[tile])
            if not np.less_equal(bits[tile], HASH_RADIUS, out=close[tile]).any():
                continue
            r, c = np.nonzero(close[tile])
            r, c = r + start, c + col
            keep = c > r
            found_a.append(structured[r[keep]])
            found_b.append(structured[c[keep]])
        if progress and (start // _ROWS % 50 == 0 or start + _ROWS >= len(structured)):
            progress(min(start + _ROWS, len(structured)), len(structured), "comparing images")
    a = np.concatenate(found_a) if found_a else np.zeros(0, np.int64)
    b = np.concatenate(found_b) if found_b else np.zeros(0, np.int64)
    other = group[a] != group[b]  # copies of one picture across the splits are exact pairs, counted apart
    a, b = a[other], b[other]
    r = correlation(grey, a, b)
    similar = r >= MIN_CORRELATION
    return a[similar].astype(np.int64), b[similar].astype(np.int64), r[similar]


def correlation(grey: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of the grey pixels of images a[i] and b[i] (flattened rows of `grey`)."""
    out = np.zeros(len(a))
    for start in range(0, len(a), 65536):
        ga = grey[a[start:start + 65536]].astype(np.float64)
        gb = grey[b[start:start + 65536]].astype(np.float64)
        ga -= ga.mean(axis=1, keepdims=True)
        gb -= gb.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(ga, axis=1) * np.linalg.norm(gb, axis=1)
        out[start:start + len(ga)] = np.where(norms > 0, (ga * gb).sum(axis=1) / np.maximum(norms, 1e-12), 0.0)
    return out
