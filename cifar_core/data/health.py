"""The health report of an image-folder dataset: counts, balance, image sizes and modes, unreadable files,
duplicates within and across splits, and the problems that block training, each saying how to fix it.

The report reads the layouts whose images sit in class folders (`Layout.class_folders`: image folders).
The structure (classes, counts, blocking problems) comes from census.folder_census:
directory listings only, fast on any size. The rest needs every image opened
once; that pass (`deep`) is cached as JSON under the decode cache folder, keyed
like the decoded arrays by the files' names, sizes and modification times, so
a second report of an unchanged dataset reads the file. Measured on CIFAR-10
(60,000 JPEGs): see README, "Datasets".

Duplicates:
  exact  the same decoded pixels (BLAKE2 of mode, size and pixel bytes), whatever the file format or name;
  near   the same 64-bit difference hash (dHash: a 9x8 grayscale thumbnail, one bit per pair of horizontal
         neighbours, set when the left one is brighter) but different pixels: re-encoded, slightly
         recoloured or resized copies. Only equal hashes count (no Hamming radius), so finding them is
         one dictionary pass, not a comparison of every pair.
Counts are of images that repeat an earlier one: a group of k identical images adds k-1 within a split; a
test image with a copy in train adds 1 across (a leak: the test score then measures memory).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cifar_core.base import bounded_json
from cifar_core.data.census import folder_census
from cifar_core.data.image_limits import check_pixels, plain_message, read_image_file, webp_canvas_size
from cifar_core.data.images import DataError, image_files
from cifar_core.data.layouts import detect_layout
from cifar_core.data.loader import data_cache_folder
from cifar_core.data.locate import resolve_data_dir

Progress = Callable[[int, int, str], None]

# A class with this many times the training images of the smallest one is worth a warning: the model will
# lean towards it (not blocking: some datasets are imbalanced by nature).
IMBALANCE_WARNING = 10.0
MAX_EXAMPLES = 20  # example pairs of each kind (exact, near) in a report
_HASH_SIZE = 8
# Grey levels (0-255) between the darkest and brightest pixel of the hash's thumbnail below which a picture is flat.
FLAT_RANGE = 8


def check_dataset(data_dir: str | Path, *, deep: bool = True, cache_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """The health report of the image-folder dataset `data_dir` (a folder, or an imported dataset's name).

    Returns a JSON-able dict: {"path", "classes", "counts": {"train": {class: n}, "test": {...}},
    "imbalance" (largest over smallest training count; None without two non-empty classes),
    "sizes" ({"WxH": images}), "modes" ({PIL mode: images}), "unreadable" ([files, relative to the dataset]),
    "duplicates": {"exact": {"within_train", "within_test", "across"}, "near": {...}, "examples": [{"kind",
    "a", "b"}]}, "problems": [{"kind", "class", "message", "blocking"}], "blocking": bool, "deep": bool}.
    With deep=False only the structure is read (sizes, modes, unreadable and duplicates are None).

    DataError when the folder holds no image-folder dataset.
    """
    folder = _folder(data_dir)
    census = folder_census(folder)
    problems = list(census["problems"])  # blocking ones included (folder_census), each with its fix
    train_counts = [n for n in census["counts"]["train"].values() if n > 0]
    imbalance = round(max(train_counts) / min(train_counts), 2) if len(train_counts) >= 2 else None
    if imbalance and imbalance >= IMBALANCE_WARNING:
        big = max(census["counts"]["train"], key=census["counts"]["train"].get)
        small = min((c for c, n in census["counts"]["train"].items() if n > 0), key=census["counts"]["train"].get)
        problems.append(_problem("imbalance", None, f"the classes are imbalanced: {big!r} has {imbalance:g} times the training "
                                 f"images of {small!r}; add images to the small classes (or accept that the model favours "
                                 "the large ones).", False))
    report = {"path": str(folder), "classes": census["classes"], "counts": census["counts"], "imbalance": imbalance,
              "sizes": None, "modes": None, "unreadable": None, "duplicates": None, "deep": deep}
    if deep:
        scan = _deep_scan(folder, census, cache_dir, progress)
        report.update(scan)
        if scan["unreadable"]:
            problems.append(_problem("unreadable", None, f"{len(scan['unreadable'])} file(s) cannot be read as images "
                                     f"(e.g. {', '.join(scan['unreadable'][:3])}): training stops on them unless told to skip "
                                     "them (--skip-bad); remove or replace them.", False))
        if across := scan["duplicates"]["exact"]["across"]:
            problems.append(_problem("leak", None, f"{across} test image(s) have an exact copy in train: the test score "
                                     "partly measures memory; remove the copies from one split.", False))
    report["problems"] = problems
    report["blocking"] = any(p["blocking"] for p in problems)
    return report


def blocking_message(data_dir: str | Path | None) -> str | None:
    """Why training cannot start on `data_dir`, in words (its blocking problems, each saying how to fix it),
    or None: also for other layouts than image folders and for a folder without a dataset (loading says why)."""
    if not data_dir:
        return None
    try:
        report = check_dataset(data_dir, deep=False)
    except (DataError, OSError):
        return None
    if not report["blocking"]:
        return None
    return ("this dataset has problems that block training:\n  " + "\n  ".join(p["message"] for p in report["problems"] if p["blocking"])
            + f"\n(`python -m cifar_core data check {data_dir}` shows the full report)")


def samples(data_dir: str | Path, per_class: int = 8) -> dict[str, list[str]]:
    """Up to `per_class` training image files per class, spread evenly over its sorted files (for a grid)."""
    folder = _folder(data_dir)
    out = {}
    for name in folder_census(folder)["classes"]:
        class_dir = folder / "train" / name
        if class_dir.is_symlink() or not class_dir.is_dir():
            out[name] = []
            continue
        files = image_files(class_dir)
        step = max(1, len(files) // max(1, per_class))
        out[name] = [str(p) for p in files[::step][:per_class]]
    return out


def other_layout(data_dir: str | Path) -> str | None:
    """The name of `data_dir`'s layout when the report cannot read it (its images are not in class folders),
    else None: also for a folder without a dataset (checking it says why)."""
    try:
        layout, _ = detect_layout(Path(resolve_data_dir(str(data_dir))))
    except (DataError, OSError):
        return None
    return None if layout.class_folders else layout.name


def _folder(data_dir: str | Path) -> Path:
    resolved = resolve_data_dir(str(data_dir))
    layout, folder = detect_layout(Path(resolved))
    if not layout.class_folders:
        raise DataError(f"{folder} is a {layout.name} dataset; the health report reads image-folder datasets "
                        "(train/<class>/*.png|jpg and test/<class>/*.png|jpg).")
    return folder


def _problem(kind: str, name: str | None, message: str, blocking: bool) -> dict:
    return {"kind": kind, "class": name, "message": message, "blocking": blocking}


# ---------------------------------------------------------------- the deep pass


def _deep_scan(folder: Path, census: dict, cache_dir: Path | None, progress: Progress | None) -> dict:
    """Sizes, modes, unreadable files and duplicates, from a cache entry when the files are unchanged."""
    entry = data_cache_folder(str(folder), cache_dir=cache_dir)  # cifar10-<key of the files>
    cache = entry.with_name(f"health-{entry.name.split('-', 1)[1]}.json")
    try:
        return bounded_json.read(cache)
    except (OSError, ValueError):
        pass
    files = [(split, p) for split in ("train", "test") for name, n in census["counts"][split].items()
             if n and not (folder / split / name).is_symlink() for p in image_files(folder / split / name)]
    sizes, modes = Counter(), Counter()
    unreadable: list[str] = []
    exact: dict[str, list[tuple[str, str]]] = defaultdict(list)
    near: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    prefix = len(str(folder)) + 1
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, ((split, path), result) in enumerate(zip(files, pool.map(_fingerprint, (p for _, p in files), chunksize=256)), 1):
            rel = str(path)[prefix:]
            if isinstance(result, str):
                unreadable.append(rel)
            else:
                size, mode, exact_hash, near_hash = result
                sizes[size] += 1
                modes[mode] += 1
                exact[exact_hash].append((split, rel))
                if near_hash is not None:
                    near[near_hash].append((split, rel, exact_hash))
            if progress and (i % 1000 == 0 or i == len(files)):
                progress(i, len(files), "checking images")
    scan = {"sizes": dict(sizes.most_common()), "modes": dict(modes.most_common()), "unreadable": unreadable,
            "duplicates": _duplicates(exact, near)}
    from cifar_core.base.atomic_io import atomic_write_text

    try:
        atomic_write_text(cache, json.dumps(scan))
    except OSError:  # a read-only or full artifacts folder: the report is still right, just not kept
        pass
    return scan


def _fingerprint(path: Path) -> tuple[str, str, str, str | None] | str:
    """(WxH, mode, exact hash, near hash or None for a flat picture) of an image file, or why it cannot be read."""
    try:
        data = read_image_file(path)
        if webp_size := webp_canvas_size(data):
            check_pixels(webp_size)
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(im.size)
            im.load()
            exact = hashlib.blake2b(f"{im.mode}{im.size}".encode() + im.tobytes(), digest_size=16).hexdigest()
            small = np.asarray(im.convert("L").resize((_HASH_SIZE + 1, _HASH_SIZE), Image.Resampling.BILINEAR), dtype=np.int16)
            bits = (small[:, :-1] > small[:, 1:]).flatten()
            # A flat picture (one colour) has no structure to compare: its hash would match every other flat one.
            near = np.packbits(bits).tobytes().hex() if np.ptp(small) >= FLAT_RANGE else None
            return f"{im.size[0]}x{im.size[1]}", im.mode, exact, near
    except Exception as err:  # Pillow raises many types for damaged files
        return plain_message(err)


def _duplicates(exact: dict, near: dict) -> dict:
    """Counts, and up to MAX_EXAMPLES example pairs of each kind, of exact and near duplicates (see the
    module docstring for what counts)."""
    exact_examples: list[dict] = []
    near_examples: list[dict] = []
    return {"exact": _exact_counts(exact, exact_examples), "near": _near_counts(near, near_examples),
            "examples": exact_examples + near_examples}


def _example(examples: list[dict], kind: str, a: str, b: str) -> None:
    if len(examples) < MAX_EXAMPLES:
        examples.append({"kind": kind, "a": a, "b": b})


def _exact_counts(exact: dict, examples: list[dict]) -> dict:
    """Every file of a group holds the same picture: k files in a split repeat it k-1 times; each test file of
    a group that has a training file is a leak."""
    within = {"train": 0, "test": 0}
    across = 0
    for members in exact.values():
        by_split = {"train": [], "test": []}
        for split, rel in members:
            by_split[split].append(rel)
        for split, rels in by_split.items():
            within[split] += max(0, len(rels) - 1)
            if len(rels) > 1:
                _example(examples, "exact", rels[0], rels[1])
        if by_split["train"] and by_split["test"]:
            across += len(by_split["test"])
            _example(examples, "exact", by_split["train"][0], by_split["test"][0])
    return {"within_train": within["train"], "within_test": within["test"], "across": across}


def _near_counts(near: dict, examples: list[dict]) -> dict:
    """A group shares a near hash; only distinct pictures (exact hashes) count, so exact copies are not
    counted again: n distinct pictures in a split add n-1; a test picture with a different training one adds 1."""
    within = {"train": 0, "test": 0}
    across = 0
    for members in near.values():
        pictures = {"train": {}, "test": {}}  # split -> {exact hash: first file}
        for split, rel, exact_hash in members:
            pictures[split].setdefault(exact_hash, rel)
        for split, found in pictures.items():
            within[split] += max(0, len(found) - 1)
            if len(found) > 1:
                _example(examples, "near", *list(found.values())[:2])
        for exact_hash, rel in pictures["test"].items():
            if others := [r for h, r in pictures["train"].items() if h != exact_hash]:
                across += 1
                _example(examples, "near", others[0], rel)
    return {"within_train": within["train"], "within_test": within["test"], "across": across}
