"""CIFAR-10 data: find it, decode it once, cache it, split it, and feed it to Keras.

An image-folder dataset may hold any set of class folders (its class list is the
sorted folder names); `select_classes` keeps some of them (`--classes`).

Accepted sources, detected from the folder's layout:
  1. image folders    <root>/{train,test}/<class>/*.{png,jpg,jpeg}
  2. Kaggle layout    <root>/train/<id>.png + <root>/trainLabels.csv
  3. python batches   <root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (or <root> itself)
  4. nothing given    keras.datasets.cifar10.load_data() (needs internet)

Why one module of ~800 lines: the layouts, the checked decoding, the decode cache
and the splits share one data type (ImageData) and one cache key; augmentation
lives in augment.py and image-file checks in image_limits.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import os
import pickle
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.base import faults
from cifar_core.data.classes import class_names_problem
from cifar_core.data.locate import resolve_data_dir
from cifar_core.base.errors import StudioError
from cifar_core.data.image_limits import check_pixels, plain_message, read_image_file, webp_canvas_size
from cifar_core.base.paths import cache_dir as default_cache_dir

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NATIVE_SIZE = 32
# Kaggle's CIFAR-10 test labels were never published, so that layout's test split
# is a seeded, stratified hold-out of its training images.
KAGGLE_TEST_FRACTION = 0.1
# Per class: one training image goes to the validation split and at least one must stay to train on;
# the test split needs one to measure the class at all.
MIN_TRAIN_IMAGES = 2
MIN_TEST_IMAGES = 1
LAYOUT_HELP = (
    "Accepted CIFAR-10 layouts:\n"
    "  1. image folders: <dir>/train/<class>/*.png|jpg and <dir>/test/<class>/*.png|jpg\n"
    "  2. Kaggle: <dir>/train/<id>.png with <dir>/trainLabels.csv (columns id,label)\n"
    "  3. python batches: <dir>/cifar-10-batches-py/ (data_batch_1..5, test_batch)\n"
    "Point at one with --data-dir DIR or the CIFAR10_DIR environment variable."
)

Progress = Callable[[int, int, str], None]


class DataError(StudioError, RuntimeError):
    """The dataset is missing or malformed; the message says what and where."""


@dataclass
class ImageData:
    """Decoded images: uint8 (N, 32, 32, 3), integer labels (N,) indexing `class_names`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: tuple[str, ...]
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- discovery


def detect_layout(root: Path) -> tuple[str, Path]:
    """Return (layout, folder) for a data folder (or an imported dataset's name), or raise DataError with the accepted layouts."""
    root = Path(resolve_data_dir(str(root)))
    if not root.is_dir():
        raise DataError(f"Data folder {str(root)!r} does not exist.\n{LAYOUT_HELP}")
    for candidate in (root / "cifar-10-batches-py", root):
        if (candidate / "data_batch_1").is_file() or (candidate / "test_batch").is_file():
            return "batches", candidate
    if (root / "trainLabels.csv").is_file():
        return "kaggle", root
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        return "folders", root
    raise DataError(f"No CIFAR-10 data recognised in {str(root)!r}.\n{LAYOUT_HELP}")


def describe_source(data_dir: str | None) -> dict:
    """A cheap summary for status displays: layout and image counts, without decoding.

    Returns {"ok": bool, "layout", "path", "counts": {split: n}, "class_names"} or {"ok": False, "message"}.
    """
    if not data_dir:
        return {"ok": False, "message": "No data folder set (CIFAR10_DIR or --data-dir).\n" + LAYOUT_HELP}
    try:
        layout, folder = detect_layout(Path(data_dir))
    except DataError as err:
        return {"ok": False, "message": str(err)}
    counts: dict[str, int] = {}
    if layout == "folders":
        for split in ("train", "test"):
            counts[split] = sum(_image_count(d) for d in _class_dirs(folder / split))
    elif layout == "kaggle":
        counts["train"] = _image_count(folder / "train")
    else:
        counts = {"train": 10000 * len(list(folder.glob("data_batch_*"))), "test": 10000 * (folder / "test_batch").is_file()}
    return {"ok": True, "layout": layout, "path": str(folder), "counts": counts, "class_names": _layout_classes(layout, folder)}


def dataset_classes(data_dir: str | None) -> tuple[str, ...] | None:
    """The class names of a data folder, from its folder names or labels file (nothing is counted or
    decoded); CIFAR-10's without a folder (Keras' download); None when the folder holds no dataset."""
    if not data_dir:
        return CLASS_NAMES
    try:
        return _layout_classes(*detect_layout(Path(data_dir)))
    except (DataError, OSError):
        return None


def _layout_classes(layout: str, folder: Path) -> tuple[str, ...]:
    if layout == "folders":
        return tuple(d.name for d in _class_dirs(folder / "train"))
    if layout == "kaggle":
        with open(folder / "trainLabels.csv", newline="") as f:
            return tuple(sorted({row.get("label", "") for row in csv.DictReader(f)}))
    return CLASS_NAMES


def match_classes(data_dir: str | None, classes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """`classes` spelled as the data folder spells them: a name that is no class but matches exactly one
    when case is ignored ("Cat" for "cat") becomes that class; any other name is kept as given, for
    `missing_classes` to name. The CLI and the form store the result, so a run records the real names."""
    available = dataset_classes(data_dir)
    if not classes or available is None:
        return classes
    return tuple(c if c in available or len(same := _same_but_case(c, available)) != 1 else same[0] for c in classes)


def _same_but_case(name: str, available: tuple[str, ...]) -> list[str]:
    return [a for a in available if a.casefold() == name.casefold()]


def missing_classes(data_dir: str | None, classes: tuple[str, ...] | None) -> str | None:
    """Why `classes` cannot be trained from `data_dir`, in words, or None (also when the folder itself
    is unusable: loading it says why). Names are matched as `match_classes` does. Without a folder,
    Keras' CIFAR-10 has the ten classes."""
    available = dataset_classes(data_dir)
    unknown = [c for c in match_classes(data_dir, classes) or () if available is not None and c not in available]
    if not unknown:
        return None
    ambiguous = [f"{c!r} could be {' or '.join(map(repr, same))}" for c in unknown if len(same := _same_but_case(c, available)) > 1]
    return (f"no class {', '.join(repr(c) for c in unknown)} in this data folder"
            + (f" ({'; '.join(ambiguous)}: write it as the folder does)" if ambiguous else "")
            + f"; its classes are: {', '.join(available)}")


# ---------------------------------------------------------------- loading


def load_dataset(
    data_dir: str | None = None,
    *,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
    limit: int | None = None,
) -> ImageData:
    """Load CIFAR-10 from `data_dir` (any accepted layout) or, with no folder, from Keras.

    Decoded arrays are cached under `cache_dir`, keyed by the source's path, file
    count, sizes and modification times, so the second load skips decoding.

    Args:
        limit: only the first `limit` training images of each class are needed
            (`make_splits(limit=...)` keeps the same ones). Image folders then decode
            just those, unless the whole dataset is cached already.
    """
    if not data_dir:
        return _load_from_keras()
    layout, folder, cache = _locate(data_dir, cache_dir, skip_bad)
    if (data := _cached(cache)) is not None:
        return data
    faults.point("data_load")
    if limit and layout == "folders":
        cache = cache.with_name(f"{cache.name}-first{limit}")
        if (data := _cached(cache)) is not None:
            return data
        data = _load_folders(folder, skip_bad=skip_bad, progress=progress, limit=limit)
    else:
        loader = {"folders": _load_folders, "kaggle": _load_kaggle, "batches": _load_batches}[layout]
        data = loader(folder, skip_bad=skip_bad, progress=progress)
    _write_cache(cache, data)
    return data


def load_test_split(
    data_dir: str,
    *,
    cache_dir: Path | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
) -> ImageData:
    """The test split of `data_dir` (the training arrays empty), decoding no more than it needs.

    Pages that only show test predictions call this: an image-folder dataset not
    cached yet has just its test folders decoded (10,000 images instead of 60,000
    for CIFAR-10) into a test-only cache entry; a full cache entry is used when
    there is one. Other layouts derive or store the test split with the training
    images (Kaggle's is a hold-out of train), so they are loaded whole.
    """
    layout, folder, cache = _locate(data_dir, cache_dir, skip_bad)
    if (data := _cached(cache, splits=("test",))) is not None:
        return data
    if layout != "folders":
        return _test_only(load_dataset(data_dir, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress))
    cache = cache.with_name(f"{cache.name}-test")
    if (data := _cached(cache, splits=("test",))) is not None:
        return data
    faults.point("data_load")
    data = _load_folders(folder, skip_bad=skip_bad, progress=progress, splits=("test",))
    _write_cache(cache, data)
    return data


def data_cache_folder(data_dir: str, *, cache_dir: Path | None = None, skip_bad: bool = False) -> Path:
    """The decode cache entry `load_dataset` reads and writes for this folder (it may not exist yet)."""
    return _locate(data_dir, cache_dir, skip_bad)[2]


def _locate(data_dir: str, cache_dir: Path | None, skip_bad: bool) -> tuple[str, Path, Path]:
    """(layout, data folder, cache entry) of a data folder: the entry is keyed by the source's files."""
    # Resolved, so the cached source description names the folder the same way from any cwd.
    try:
        resolved = Path(resolve_data_dir(data_dir)).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symbolic link loop
        raise DataError(f"Data folder {str(data_dir)!r} cannot be opened ({plain_message(err)}).") from err
    layout, folder = detect_layout(resolved)
    key = _cache_key(layout, folder, _source_files(layout, folder), skip_bad)
    return layout, folder, Path(cache_dir or default_cache_dir()) / f"cifar10-{key}"


def _test_only(data: ImageData) -> ImageData:
    return replace(data, x_train=data.x_train[:0], y_train=data.y_train[:0])


def _load_from_keras() -> ImageData:
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
    except Exception as err:  # urllib/OSError/HTTP errors all mean "could not download"
        raise DataError(
            "No data folder was given and downloading CIFAR-10 with "
            f"keras.datasets.cifar10.load_data() failed ({type(err).__name__}: {err}).\n{LAYOUT_HELP}"
        ) from err
    return ImageData(x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64), "keras.datasets.cifar10",
                     CLASS_NAMES)


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []


def _files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
    """The files of `folder` (those ending in `suffixes` if given), sorted.

    Links that lead nowhere (dangling, or a loop) are listed too, so that loading
    names them as unreadable (skipped with --skip-bad) instead of silently dropping them.
    """
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if (suffixes is None or e.name.lower().endswith(suffixes)) and _listed(e))


def _listed(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file() or entry.is_symlink() and not os.path.exists(entry.path)
    except OSError:  # a link loop: following it fails
        return True


def _image_files(folder: Path) -> list[Path]:
    return _files(folder, IMAGE_SUFFIXES)


def _image_count(folder: Path) -> int:
    """len(_image_files(folder)) without building and sorting the paths: the sidebar counts on every page run."""
    with os.scandir(folder) as it:
        return sum(1 for e in it if e.name.lower().endswith(IMAGE_SUFFIXES) and _listed(e))


def _source_files(layout: str, folder: Path) -> list[Path]:
    if layout == "batches":
        return sorted(folder.glob("data_batch_*")) + sorted(folder.glob("test_batch"))
    if layout == "kaggle":
        return [folder / "trainLabels.csv"] + _image_files(folder / "train")
    # Sorting names, not Path objects: Path comparisons dominate a cached load of 60,000 files.
    return [d / name for split in ("train", "test") for d in _class_dirs(folder / split) for name in sorted(os.listdir(d))]


def _cache_key(layout: str, folder: Path, files: list[Path], skip_bad: bool) -> str:
    h = hashlib.sha1(f"{layout}|{folder.resolve()}|{len(files)}|{skip_bad}".encode())
    prefix = str(folder) + os.sep
    for f in files:
        try:
            st = os.stat(f)
            signature = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError as err:  # a dangling link or a link loop: reported when the files are decoded
            signature = f"unreadable {err.errno}"
        # The relative path, not just the name: moving a file to another class folder relabels it.
        # Slicing off the shared prefix is much cheaper than relative_to over 60,000 files.
        path = str(f)
        rel = path[len(prefix):] if path.startswith(prefix) else str(f.relative_to(folder))
        h.update(f"{rel}:{signature};".encode())
    return h.hexdigest()[:16]


def _decode(path: Path) -> np.ndarray:
    """One training image as uint8 RGB 32x32, with the uploads' limits on file size and declared pixels."""
    data = read_image_file(path)
    if webp_size := webp_canvas_size(data):
        check_pixels(webp_size)
    with Image.open(io.BytesIO(data)) as im:
        check_pixels(im.size)
        im = im.convert("RGB")
        if im.size != (NATIVE_SIZE, NATIVE_SIZE):
            im = im.resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)


def _decode_all(paths: list[Path], skip_bad: bool, progress: Progress | None, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode `paths`; return (images, kept-index, bad-file messages). Raises unless skip_bad."""

    def safe(path: Path) -> np.ndarray | str:
        try:
            return _decode(path)
        except Exception as err:  # PIL raises many types for bad files
            return f"{path}: {plain_message(err)}"

    images, kept, bad = [], [], []
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for i, result in enumerate(pool.map(safe, paths, chunksize=256)):
            if isinstance(result, str):
                bad.append(result)
            else:
                images.append(result)
                kept.append(i)
            if progress and (i + 1) % 1000 == 0 or progress and i + 1 == len(paths):
                progress(i + 1, len(paths), f"decoding {what}")
    if bad and not skip_bad:
        shown = "\n  ".join(bad[:5])
        raise DataError(
            f"{len(bad)} unreadable or non-image file(s) in {what}; first ones:\n  {shown}\n"
            "Remove them, or pass --skip-bad to skip them (the count is reported)."
        )
    x = np.stack(images) if images else np.zeros((0, NATIVE_SIZE, NATIVE_SIZE, 3), np.uint8)
    return x, np.asarray(kept, dtype=np.int64), bad


def _folder_classes(folder: Path) -> tuple[str, ...]:
    """The class list of an image-folder dataset: its class folders, sorted; DataError with every problem
    of `folder_census` that makes it unusable (a missing or empty class, a class folder that is a link, ...)."""
    census = folder_census(folder)
    if blocking := [p["message"] for p in census["problems"] if p["blocking"]]:
        raise DataError(f"The dataset in {folder} cannot be used yet:\n  " + "\n  ".join(blocking))
    return tuple(census["classes"])


def folder_census(folder: Path) -> dict:
    """The class folders of an image-folder dataset, their image counts and what makes it unusable, without
    decoding anything (a few directory listings: fast on CIFAR-10's 60,000 files).

    Returns {"classes": sorted class names of train/ and test/ together, "counts": {"train": {class: images},
    "test": {...}}, "problems": [{"kind", "class", "message", "blocking"}]}. Blocking problems: a missing split,
    a class folder that is a link (never followed: a link to its own parent would be a class of other classes'
    folders), a class missing from one split, an empty class folder or split, fewer than MIN_TRAIN_IMAGES training
    or MIN_TEST_IMAGES test images in a class, fewer than two classes. Each message says how to fix it.
    """
    folder = Path(folder)
    problems: list[dict] = []

    def problem(kind: str, name: str | None, message: str, blocking: bool = True) -> None:
        problems.append({"kind": kind, "class": name, "message": message, "blocking": blocking})

    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    links: set[str] = set()
    for split in ("train", "test"):
        split_dir = folder / split
        if not split_dir.is_dir():
            problem("missing_split", None, f"{split_dir} is missing: an image-folder dataset needs train/<class>/ and "
                    "test/<class>/ folders (`python -m cifar_core data import` makes a test split from class folders).")
            continue
        stray = []
        with os.scandir(split_dir) as it:
            for entry in sorted(it, key=lambda e: e.name):
                if entry.is_symlink() and not _is_file(entry):
                    links.add(entry.name)
                    counts[split][entry.name] = 0
                    problem("class_link", entry.name, f"{split}/{entry.name} is {_link_text(entry, split_dir)}; a class "
                            "folder must be a real folder. Replace the link with a folder holding the images, or remove it.")
                elif entry.is_dir():
                    counts[split][entry.name] = _image_count(Path(entry.path))
                elif not entry.name.startswith("."):
                    stray.append(entry.name)
        if stray:
            problem("stray_files", None, f"{len(stray)} file(s) directly in {split}/ are in no class folder and are ignored "
                    f"(e.g. {', '.join(stray[:3])}); move them into train|test/<class>/ to use them.", blocking=False)
    classes = sorted(set(counts["train"]) | set(counts["test"]))
    empty_splits = {split for split in ("train", "test") if counts[split] and not sum(counts[split].values())}
    for split in sorted(empty_splits, reverse=True):  # train first
        problem("empty_split", None, f"The {split} split in {folder / split} has no images (.png, .jpg, .jpeg); add them "
                "to its class folders.")
    for name in classes:
        if name in links:
            continue
        train, test = counts["train"].get(name), counts["test"].get(name)
        if test is None and "test" in _present(folder):
            problem("missing_in_split", name, f"test/ has no folder for: {name} (train/ has one): add test/{name}/ with at "
                    f"least {MIN_TEST_IMAGES} image, or remove train/{name}/.")
        if train is None and "train" in _present(folder):
            problem("missing_in_split", name, f"test/ has folders that train/ lacks: {name}: add train/{name}/ with at least "
                    f"{MIN_TRAIN_IMAGES} images, or remove test/{name}/.")
        for split, n in (("train", train), ("test", test)):
            if n == 0 and split not in empty_splits:
                problem("empty_class", name, f"{split}/{name}/ holds no images (.png, .jpg, .jpeg): add images to it, or "
                        "remove the folder (from train/ and test/).")
        if train and train < MIN_TRAIN_IMAGES:
            problem("too_few_train", name, f"class {name!r} has {train} training image; at least {MIN_TRAIN_IMAGES} are "
                    f"needed (one goes to the validation split): add images to train/{name}/.")
    if len(classes) - len(links) < 2 and not any(p["kind"] == "missing_split" for p in problems):
        problem("too_few_classes", None, f"{folder / 'train'} must hold at least two class folders, found: "
                f"{', '.join(classes) or 'none'}. Add a folder of images for each class.")
    elif len(classes) >= 2 and (bad_names := class_names_problem(classes)):  # folder names become labels on every page and in file names
        problem("class_names", None, f"The class folders in {folder} cannot all be class names: {bad_names}; rename them.")
    return {"classes": classes, "counts": counts, "problems": problems}


def _present(folder: Path) -> set[str]:
    return {split for split in ("train", "test") if (folder / split).is_dir()}


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a link loop
        return False


def _link_text(entry: os.DirEntry, split_dir: Path) -> str:
    """What a link in a split folder leads to, in words."""
    try:
        target = Path(entry.path).resolve(strict=True)
    except (OSError, RuntimeError):
        return "a link that leads nowhere (its target is missing, or it is a loop)"
    if target == split_dir.resolve() or target in split_dir.resolve().parents:
        return "a link to its own parent folder (a loop)"
    return f"a link to {target}"


def select_classes(data: ImageData, names: tuple[str, ...] | list[str], in_data_order: bool = False) -> ImageData:
    """Only the images of the classes `names`, labelled 0..len(names)-1 in that order.

    Args:
        in_data_order: order the classes as the dataset does, so that "cat,dog" and
            "dog,cat" train the same model (a training run); else as given (a model's outputs).

    DataError, naming the classes that exist, when one of `names` is not in the data.
    """
    names = tuple(names)
    unknown = [n for n in names if n not in data.class_names]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        problem = (f"no class {', '.join(repr(n) for n in unknown)} in this dataset" if unknown
                   else "each class must be named once" if len(set(names)) != len(names) else "at least two classes are needed")
        raise DataError(f"{problem}; its classes are: {', '.join(data.class_names)}.")
    if in_data_order:
        names = tuple(n for n in data.class_names if n in names)
    if names == data.class_names:
        return data
    old_index = np.asarray([data.class_names.index(n) for n in names])
    relabel = np.full(len(data.class_names), -1, np.int64)
    relabel[old_index] = np.arange(len(names))

    def part(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.isin(y, old_index)
        return x[keep], relabel[y[keep]]

    return ImageData(*part(data.x_train, data.y_train), *part(data.x_test, data.y_test), source=data.source,
                     class_names=names, skipped=data.skipped)


def _load_folders(folder: Path, skip_bad: bool, progress: Progress | None, limit: int | None = None,
                  splits: tuple[str, ...] = ("train", "test")) -> ImageData:
    """Decode an image-folder dataset; with `limit`, only the first `limit` training images of each class;
    a split left out of `splits` comes back empty."""
    names = _folder_classes(folder)
    empty = (np.zeros((0, NATIVE_SIZE, NATIVE_SIZE, 3), np.uint8), np.zeros(0, np.int64))
    arrays, skipped = {"train": empty, "test": empty}, []
    for split in splits:
        split_dir = folder / split
        paths, labels = [], []
        for label, name in enumerate(names):
            files = _files(split_dir / name)
            if split == "train" and limit:
                files = files[:limit]
            paths += files
            labels += [label] * len(files)
        if not paths:
            raise DataError(f"The {split} split in {split_dir} has no images.")
        x, kept, bad = _decode_all(paths, skip_bad, progress, f"{split} split")
        arrays[split] = (x, np.asarray(labels, dtype=np.int64)[kept])
        skipped += bad
    _require_nonempty({split: arrays[split] for split in splits})
    return ImageData(*arrays["train"], *arrays["test"], source=f"image folders at {folder}", class_names=names, skipped=skipped)


def _load_kaggle(folder: Path, skip_bad: bool, progress: Progress | None) -> ImageData:
    with open(folder / "trainLabels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "label"} <= set(rows[0]):
        raise DataError(f"{folder / 'trainLabels.csv'} must have columns 'id' and 'label'.")
    names = tuple(sorted({r["label"] for r in rows}))
    if problem := class_names_problem(names):
        raise DataError(f"The labels in {folder / 'trainLabels.csv'} cannot all be class names: {problem}.")
    paths = [folder / "train" / f"{r['id']}.png" for r in rows]
    missing = [r["id"] for r, p in zip(rows, paths) if not p.is_file()]
    if missing:
        raise DataError(f"{len(missing)} id(s) in trainLabels.csv have no image in {folder / 'train'}; first: {', '.join(missing[:5])}.")
    x, kept, bad = _decode_all(paths, skip_bad, progress, "train split")
    y = np.asarray([names.index(r["label"]) for r in rows], dtype=np.int64)[kept]
    test_idx, train_idx = stratified_split(y, KAGGLE_TEST_FRACTION, seed=0)
    arrays = {"train": (x[train_idx], y[train_idx]), "test": (x[test_idx], y[test_idx])}
    _require_nonempty(arrays)
    return ImageData(*arrays["train"], *arrays["test"], source=f"Kaggle layout at {folder} (test = 10% stratified hold-out of train)",
                     class_names=names, skipped=bad)


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only.

    A pickle can name any importable function to call while loading (os.system, ...);
    a CIFAR-10 batch only needs numpy's array reconstruction, so a file that asks for
    anything else is refused instead of run.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x (the official files)
        ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, lists and dicts")
        return super().find_class(module, name)


def _load_batches(folder: Path, skip_bad: bool, progress: Progress | None) -> ImageData:
    def read(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{path} is missing from the python batches folder.")
        try:
            # The official CIFAR-10 python batches are pickles, the format's only encoding;
            # _BatchUnpickler builds arrays, lists and dicts and refuses anything else.
            with open(path, "rb") as f:
                d = _BatchUnpickler(f, encoding="bytes").load()
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE).transpose(0, 2, 3, 1)
            return x, np.asarray(d[b"labels"], dtype=np.int64)
        except DataError:
            raise
        except Exception as err:
            raise DataError(f"{path} is not a readable CIFAR-10 python batch ({type(err).__name__}: {err}).") from err

    parts = [read(f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = read("test_batch")
    if progress:
        progress(6, 6, "reading python batches")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return ImageData(x_train, y_train, x_test, y_test, source=f"python batches at {folder}", class_names=CLASS_NAMES)


def _require_nonempty(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for split, (x, _) in arrays.items():
        if len(x) == 0:
            raise DataError(f"The {split} split is empty after removing unreadable files.")


def split_files(data_dir: str | None, data: ImageData, split: str, class_names: tuple[str, ...] | None = None) -> list[str] | None:
    """The file behind each image of `data`'s `split` (`data` as `load_dataset(data_dir)` returned it), in
    the same order, or with `class_names` in the order of `select_classes(data, class_names)`; None when
    the images have no files of their own (python batches, Keras' download) or the folder no longer
    matches what was decoded."""
    if not data_dir:
        return None
    try:
        layout, folder = detect_layout(Path(data_dir).resolve())
    except (DataError, OSError):
        return None
    # Files skipped as unreadable (--skip-bad) have no image; their messages start with the path.
    bad = {message.split(": ", 1)[0] for message in data.skipped}
    if layout == "folders":
        paths = [str(p) for name in data.class_names for p in _files(folder / split / name) if str(p) not in bad]
    elif layout == "kaggle":
        with open(folder / "trainLabels.csv", newline="") as f:
            rows = [(str(folder / "train" / f"{row['id']}.png"), row["label"]) for row in csv.DictReader(f)]
        rows = [row for row in rows if row[0] not in bad]
        # The same seeded hold-out as `_load_kaggle`.
        test_idx, train_idx = stratified_split(np.asarray([data.class_names.index(label) for _, label in rows]),
                                               KAGGLE_TEST_FRACTION, seed=0)
        paths = [rows[i][0] for i in (train_idx if split == "train" else test_idx)]
    else:
        return None
    labels = data.y_train if split == "train" else data.y_test
    if len(paths) != len(labels):
        return None
    if class_names is None:
        return paths
    # select_classes keeps the images of the named classes in their order.
    keep = np.isin(labels, [data.class_names.index(n) for n in class_names if n in data.class_names])
    return [p for p, kept in zip(paths, keep) if kept]


# ---------------------------------------------------------------- cache

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def _write_cache(cache: Path, data: ImageData) -> None:
    """Write the decoded arrays atomically: a half-written cache is never read."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.parent, prefix=".tmp-"))
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(data, name), allow_pickle=False)
        sizes = {name: (tmp / f"{name}.npy").stat().st_size for name in ARRAYS}  # read back to detect a cut-short file
        (tmp / "meta.json").write_text(json.dumps({"source": data.source, "skipped": data.skipped,
                                                   "class_names": list(data.class_names), "bytes": sizes}))
        os.replace(tmp, cache)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (cache / "meta.json").is_file():  # another process may have won the race
            raise


def _cached(cache: Path, splits: tuple[str, ...] = ("train", "test")) -> ImageData | None:
    """A cache entry's data, or None when there is none. A damaged entry (a cut-short array, an unreadable
    meta.json) is removed with a warning, so the caller decodes the images again instead of failing."""
    if not (cache / "meta.json").is_file():
        return None
    try:
        return _read_cache(cache, splits)
    except (OSError, ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        log.warning("The decoded-image cache %s is damaged (%s); decoding the images again.", cache.name, err)
        shutil.rmtree(cache, ignore_errors=True)
        return None


def _read_cache(cache: Path, splits: tuple[str, ...] = ("train", "test")) -> ImageData:
    """A cache entry's arrays; the splits left out of `splits` come back empty without being read.
    ValueError if an array's size differs from the one recorded or the arrays do not fit together."""
    meta = json.loads((cache / "meta.json").read_text())
    for name, size in meta.get("bytes", {}).items():  # entries written before sizes were recorded have none
        if name in ARRAYS and (cache / f"{name}.npy").stat().st_size != size:
            raise ValueError(f"{name}.npy holds {(cache / f'{name}.npy').stat().st_size} bytes, {size} were written")
    empty = {"x": np.zeros((0, NATIVE_SIZE, NATIVE_SIZE, 3), np.uint8), "y": np.zeros(0, np.int64)}
    arrays = {f"{a}_{split}": np.load(cache / f"{a}_{split}.npy", allow_pickle=False) if split in splits else empty[a]
              for split in ("train", "test") for a in ("x", "y")}
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or x.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE, 3) or y.shape != (len(x),):
            raise ValueError(f"its {split} arrays have shapes {x.shape} and {y.shape}")
    # Caches written before class lists came from the data hold CIFAR-10's ten classes.
    return ImageData(**arrays, source=meta["source"], skipped=meta["skipped"], class_names=tuple(meta.get("class_names", CLASS_NAMES)))


# ---------------------------------------------------------------- splits


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (held_out, rest): `fraction` of each class held out, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    held, rest = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else 0
        held.append(idx[:n])
        rest.append(idx[n:])
    return np.sort(np.concatenate(held)), np.sort(np.concatenate(rest))


def limit_per_class(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first `n` images of each class, in their original order."""
    keep = np.concatenate([np.flatnonzero(y == c)[:n] for c in np.unique(y)])
    return np.sort(keep)


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


def make_splits(data: ImageData, *, val_fraction: float, seed: int, limit: int | None = None) -> Splits:
    """Train/val/test. Val is a stratified, seeded part of train; test is kept for final evaluation."""
    x, y = data.x_train, data.y_train
    if limit:
        keep = limit_per_class(y, limit)
        x, y = x[keep], y[keep]
    val_idx, train_idx = stratified_split(y, val_fraction, seed)
    return Splits(x[train_idx], y[train_idx], x[val_idx], y[val_idx], data.x_test, data.y_test, data.class_names)


# ---------------------------------------------------------------- tf.data


def preprocess(images, input_size: int = NATIVE_SIZE):
    """uint8 RGB images (N, H, W, 3) -> float32 VGG16 input at `input_size`.

    The same function serves training, evaluation and inference. It uses VGG16's own
    `preprocess_input` (RGB->BGR, ImageNet mean subtraction); the seed divided by 255,
    which does not match ImageNet weights.
    """
    import keras
    import tensorflow as tf

    x = tf.cast(images, tf.float32)
    if input_size != x.shape[1] or input_size != x.shape[2]:
        x = tf.image.resize(x, (input_size, input_size), method="bilinear")
    return keras.applications.vgg16.preprocess_input(x)


def one_hot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels (N,) -> float32 one-hot rows (N, num_classes), the loss's target format."""
    return np.eye(num_classes, dtype=np.float32)[y]


def batched(x, y, batch_size: int, *, training: bool, seed: int = 0):
    """(x, y) as a tf.data pipeline of batches (one pass), reshuffled with `seed` every pass when training.

    For validation, evaluation and `make_dataset`; training runs use `epoch_batches`.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if training:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size)


def image_batches(x: np.ndarray, batch_size: int, *, input_size: int = NATIVE_SIZE):
    """One pass over uint8 images `x` in order, as preprocessed batches without labels: what predicting reads."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(x).batch(batch_size)
    return ds.map(lambda images: preprocess(images, input_size), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    training: bool,
    augment: bool = False,
    input_size: int = NATIVE_SIZE,
    seed: int = 0,
    num_classes: int,
):
    """One pass over (x, y) as batches of (preprocessed images, one-hot labels), prefetched.

    With `training`, reshuffled every pass; with `augment` too, random flips and
    reflect-padded shifts of up to 4 pixels. Training runs use `training_stream`.
    """
    import tensorflow as tf

    from cifar_core.data import augment as aug

    ds = batched(x, y, batch_size, training=training, seed=seed)

    def prep(images, labels):
        images = tf.cast(images, tf.float32)
        if training and augment:
            n = tf.shape(images)[0]
            images = aug.flip(images, tf.random.uniform([n]) < 0.5)
            images = aug.translate(images, 4, aug.random_offsets(n, 4))
        return preprocess(images, input_size), tf.one_hot(labels, num_classes)

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def epoch_batches(x, y, batch_size: int, *, seed: int, extra=None):
    """Endless (batch number, (x, y[, extra])) pairs, reshuffled every epoch with `seed`.

    Shared by the image stream and the cached-feature head phase: with the same seed,
    both see the same batches, so the feature cache changes speed, not results.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y) if extra is None else (x, y, extra))
    return ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size).repeat().enumerate()


def feature_stream(features: np.ndarray, y: np.ndarray, batch_size: int, *, seed: int = 0, num_classes: int):
    """Endless training batches of (cached base features, one-hot labels), as `training_stream` orders images."""
    import tensorflow as tf

    ds = epoch_batches(features, y, batch_size, seed=seed)
    return ds.map(lambda count, batch: (batch[0], tf.one_hot(batch[1], num_classes))).prefetch(tf.data.AUTOTUNE)


def training_stream(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    flip: str,
    translate: int,
    input_size: int = NATIVE_SIZE,
    seed: int = 0,
    first_epoch: int = 0,
    num_classes: int,
):
    """Endless training batches, epoch after epoch (`fit` with `steps_per_epoch`), reshuffled every epoch.

    Each epoch is `ceil(len(x) / batch_size)` batches, so the pipeline knows which
    epoch a batch belongs to: "alternating" flips need it. Augmentation draws from
    stateless seeds, so a run with the same seed sees the same batches.

    Args:
        flip: "random", "alternating" (see `augment`) or "none".
        translate: largest shift in pixels (reflect padding); 0 = none.
        first_epoch: the epoch the stream starts at (a resumed phase).
    """
    import tensorflow as tf

    from cifar_core.data import augment as aug

    steps = math.ceil(len(x) / batch_size)
    ds = epoch_batches(x, y, batch_size, seed=seed, extra=aug.flip_bits(len(x), seed))

    def prep(count, batch):
        images, labels, bit = batch
        images = tf.cast(images, tf.float32)
        n = tf.shape(images)[0]
        step_seed = tf.stack([tf.constant(seed, tf.int64), count])
        if flip == "alternating":
            odd_epoch = (first_epoch + count // steps) % 2 == 1
            images = aug.flip(images, tf.math.logical_xor(bit, odd_epoch))
        elif flip == "random":
            images = aug.flip(images, tf.random.stateless_uniform([n], seed=step_seed) < 0.5)
        images = aug.translate(images, translate, aug.random_offsets(n, translate, step_seed + 1))
        return preprocess(images, input_size), tf.one_hot(labels, num_classes)

    return ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
