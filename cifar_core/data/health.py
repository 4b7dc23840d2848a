"""The health report of an image-folder dataset: counts, balance, image sizes and modes, unreadable files,
duplicates within and across splits, the warnings a practitioner expects (few images per class, strong
imbalance, a test split too small for its accuracy to mean much) and the problems that block training, each
saying how to fix it.

The report reads the layouts whose images sit in class folders (`Layout.class_folders`: image folders).
The structure (classes, counts, blocking problems, warnings on counts) comes from census.folder_census:
directory listings only, fast on any size. The rest needs every image opened
once; that pass (`deep`) is cached as JSON under the decode cache folder, keyed
like the decoded arrays by the files' names, sizes and modification times, so
a second report of an unchanged dataset reads the file. Measured on CIFAR-10
(60,000 JPEGs): see README, "Data".

Duplicates are found by data/duplicates.py, the finder Error analysis and `inspect` use too (exact: the same
pixels; near: the same picture re-encoded or recoloured). A test image with a copy in train is a leak, a named
warning: the test score then partly measures memory.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cifar_core.base import bounded_json
from cifar_core.base.intervals import half_width
from cifar_core.data import duplicates
from cifar_core.data.census import folder_census
from cifar_core.data.image_limits import check_pixels, plain_message, read_image_file, webp_canvas_size
from cifar_core.data.images import DataError, image_files, native_pixels
from cifar_core.data.layouts import detect_layout
from cifar_core.data.loader import data_cache_folder
from cifar_core.data.locate import resolve_data_dir

Progress = Callable[[int, int, str], None]

# A class with this many times the training images of the smallest one is worth a warning: the model will
# lean towards it (not blocking: some datasets are imbalanced by nature).
IMBALANCE_WARNING = 10.0
# Fewer training images than this in a class: transfer from a trained base can still work, but the class is
# learned from very few examples (Teachable Machine-sized); a warning, not a block.
FEW_IMAGES_WARNING = 20
# A test split whose 95% interval is wider than this either side (at 50% accuracy, where it is widest) measures
# little: 400 images give about +-4.9 points, 30 give +-17.
TEST_HALF_WIDTH_WARNING = 0.05
MAX_EXAMPLES = 20  # example pairs in a report, leaks first


def check_dataset(data_dir: str | Path, *, deep: bool = True, cache_dir: Path | None = None, progress: Progress | None = None) -> dict:
    """The health report of the image-folder dataset `data_dir` (a folder, or an imported dataset's name).

    Returns a JSON-able dict: {"path", "classes", "counts": {"train": {class: n}, "test": {...}},
    "imbalance" (largest over smallest training count; None without two non-empty classes),
    "sizes" ({"WxH": images}), "modes" ({PIL mode: images}), "unreadable" ([files, relative to the dataset]),
    "duplicates": {"exact": {"within_train", "within_test", "across"}, "near": {...}, "leaked_test_images",
    "examples": [{"kind", "a", "b"}]} (image counts: see data/duplicates.py), "problems": [{"kind", "class",
    "message", "blocking"}], "blocking": bool, "deep": bool}.
    With deep=False only the structure is read (sizes, modes, unreadable and duplicates are None).

    DataError when the folder holds no image-folder dataset.
    """
    folder = _folder(data_dir)
    census = folder_census(folder)
    problems = list(census["problems"])  # blocking ones included (folder_census), each with its fix
    train_counts = [n for n in census["counts"]["train"].values() if n > 0]
    imbalance = round(max(train_counts) / min(train_counts), 2) if len(train_counts) >= 2 else None
    problems += _count_warnings(census["counts"], imbalance)
    report = {"path": str(folder), "classes": census["classes"], "counts": census["counts"], "imbalance": imbalance,
              "sizes": None, "modes": None, "unreadable": None, "duplicates": None, "deep": deep}
    if deep:
        scan = _deep_scan(folder, census, cache_dir, progress)
        report.update(scan)
        if scan["unreadable"]:
            problems.append(_problem("unreadable", None, f"{len(scan['unreadable'])} file(s) cannot be read as images "
                                     f"(e.g. {', '.join(scan['unreadable'][:3])}): training stops on them unless told to skip "
                                     "them (--skip-bad); remove or replace them.", False))
        if leak := leak_message(scan["duplicates"]):
            problems.append(_problem("leak", None, leak, False))
    report["problems"] = problems
    report["blocking"] = any(p["blocking"] for p in problems)
    return report


def leak_message(found: dict) -> str | None:
    """The leak warning of a duplicates report (`check_dataset`'s "duplicates"), or None without a leak."""
    leaked = found["leaked_test_images"]
    if not leaked:
        return None
    example = next((e for e in found["examples"] if Path(e["a"]).parts[:1] != Path(e["b"]).parts[:1]), None)
    return (f"Train/test leak: {leaked} test image(s) have a copy in train ({found['exact']['across']} exact, {found['near']['across']} "
            "near" + (f"; e.g. {example['b']} and {example['a']}" if example else "") + "): the test score partly "
            "measures memory. Remove the copies from one split.")


def _count_warnings(counts: dict[str, dict[str, int]], imbalance: float | None) -> list[dict]:
    """Warnings from the counts alone: strong imbalance, few training images in a class, a small test split."""
    problems = []
    train = counts["train"]
    if imbalance and imbalance >= IMBALANCE_WARNING:
        big = max(train, key=train.get)
        small = min((c for c, n in train.items() if n > 0), key=train.get)
        problems.append(_problem("imbalance", None, f"the classes are imbalanced: {big!r} has {imbalance:g} times the training "
                                 f"images of {small!r}; add images to the small classes (or accept that the model favours "
                                 "the large ones).", False))
    few = sorted((n, c) for c, n in train.items() if 0 < n < FEW_IMAGES_WARNING)
    if few:
        names = ", ".join(f"{c!r} ({n})" for n, c in few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
        problems.append(_problem("few_images", None, f"few training images: {names}, fewer than about {FEW_IMAGES_WARNING} per "
                                 "class; the model learns these classes from very few examples and its scores on them vary "
                                 "a lot. Add images where you can.", False))
    test_total = sum(counts["test"].values())
    if test_total and half_width(test_total) > TEST_HALF_WIDTH_WARNING:
        problems.append(_problem("small_test", None, f"the test split holds only {test_total} image(s): an accuracy measured "
                                 f"on it is uncertain by up to ±{half_width(test_total):.0%} (95% interval), so compare runs on "
                                 "it with care; the pages show each accuracy's interval beside it.", False))
    return problems


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
    census = folder_census(folder)
    for name in census["classes"]:
        class_dir = folder / "train" / census["folders"][name]
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
    # "health2": reports made before the duplicate finder (data/duplicates.py) counted differently.
    cache = entry.with_name(f"health2-{entry.name.split('-', 1)[1]}.json")
    try:
        return bounded_json.read(cache)
    except (OSError, ValueError):
        pass
    files = [(split, p) for split in ("train", "test") for name, n in census["counts"][split].items()
             if n and not (folder / split / census["folders"][name]).is_symlink()
             for p in image_files(folder / split / census["folders"][name])]
    sizes, modes = Counter(), Counter()
    unreadable: list[str] = []
    read: dict[str, list] = {"train": [], "test": []}  # split -> [(relative path, pixels)]
    prefix = len(str(folder)) + 1
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, ((split, path), result) in enumerate(zip(files, pool.map(_open, (p for _, p in files), chunksize=256)), 1):
            rel = str(path)[prefix:]
            if isinstance(result, str):
                unreadable.append(rel)
            else:
                size, mode, pixels = result
                sizes[size] += 1
                modes[mode] += 1
                read[split].append((rel, pixels))
            if progress and (i % 1000 == 0 or i == len(files)):
                progress(i, len(files), "checking images")
    scan = {"sizes": dict(sizes.most_common()), "modes": dict(modes.most_common()), "unreadable": unreadable,
            "duplicates": _duplicates(read, progress)}
    from cifar_core.base.atomic_io import atomic_write_text

    try:
        atomic_write_text(cache, json.dumps(scan))
    except OSError:  # a read-only or full artifacts folder: the report is still right, just not kept
        pass
    return scan


def _open(path: Path) -> tuple[str, str, np.ndarray] | str:
    """(WxH, mode, 32x32 RGB pixels as the loader decodes them) of an image file, or why it cannot be read."""
    try:
        data = read_image_file(path)
        if webp_size := webp_canvas_size(data):
            check_pixels(webp_size)
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(im.size)
            im.load()
            return f"{im.size[0]}x{im.size[1]}", im.mode, native_pixels(im)
    except Exception as err:  # Pillow raises many types for damaged files
        return plain_message(err)


def _duplicates(read: dict[str, list], progress: Progress | None) -> dict:
    """The finder's counts over the readable images, and up to MAX_EXAMPLES example pairs (leaks first) as files."""
    names = [rel for split in ("train", "test") for rel, _ in read[split]]
    arrays = {split: np.stack([pixels for _, pixels in read[split]]) if read[split] else np.zeros((0, 32, 32, 3), np.uint8)
              for split in ("train", "test")}
    found = duplicates.find_in_arrays(arrays["train"], arrays["test"], progress)
    counts = found.counts()
    counts["examples"] = [{"kind": kind, "a": names[a], "b": names[b]} for kind, a, b in found.ordered_pairs()[:MAX_EXAMPLES]]
    return counts
