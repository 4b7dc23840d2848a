"""Loading a dataset: find its layout (layouts/), decode it once, cache the arrays, and pick classes from it.

An image-folder dataset may hold any set of class folders (its class list is the
sorted folder names); `select_classes` keeps some of them (`--classes`). Without a
data folder, CIFAR-10 comes from Keras' download (layouts/keras_download.py).

The decode cache lives here with the loading it serves: an entry is keyed by the
layout and its source files (names, sizes, modification times), so a changed
file is decoded again and an unchanged dataset is read back in a second.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from cifar_core.base import faults
from cifar_core.base import bounded_json
from cifar_core.base.paths import cache_dir as default_cache_dir
from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.image_limits import plain_message
from cifar_core.data.images import NATIVE_SIZE, SPLITS, DataError, ImageData, Progress, empty_split
from cifar_core.data.layouts import LAYOUT_HELP, detect_layout
from cifar_core.data.layouts.base import Layout
from cifar_core.data.layouts.keras_download import LAYOUT as WITHOUT_FOLDER
from cifar_core.data.locate import resolve_data_dir

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- without decoding


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
    return {"ok": True, "layout": layout.name, "path": str(folder), "counts": layout.counts(folder), "class_names": layout.classes(folder)}


def dataset_classes(data_dir: str | None) -> tuple[str, ...] | None:
    """The class names of a data folder, from its folder names or labels file (nothing is counted or
    decoded); CIFAR-10's without a folder (Keras' download); None when the folder holds no dataset."""
    if not data_dir:
        return WITHOUT_FOLDER.classes()
    try:
        layout, folder = detect_layout(Path(data_dir))
        return layout.classes(folder)
    except (DataError, OSError):
        return None


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
    """Load a dataset from `data_dir` (any accepted layout) or, with no folder, CIFAR-10 from Keras.

    Decoded arrays are cached under `cache_dir`, keyed by the source's path, file
    count, sizes and modification times, so the second load skips decoding.

    Args:
        limit: only the first `limit` training images of each class are needed
            (`make_splits(limit=...)` keeps the same ones). Image folders then decode
            just those, unless the whole dataset is cached already.
    """
    if not data_dir:
        return WITHOUT_FOLDER.load(skip_bad=skip_bad, progress=progress)
    layout, folder, cache = _locate(data_dir, cache_dir, skip_bad)
    if (data := _cached(cache)) is not None:
        return data
    faults.point("data_load")
    if limit and layout.decodes_part:
        cache = cache.with_name(f"{cache.name}-first{limit}")
        if (data := _cached(cache)) is not None:
            return data
        data = layout.load(folder, skip_bad=skip_bad, progress=progress, limit=limit)
    else:
        data = layout.load(folder, skip_bad=skip_bad, progress=progress)
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
    if not layout.decodes_part:
        return _test_only(load_dataset(data_dir, cache_dir=cache_dir, skip_bad=skip_bad, progress=progress))
    cache = cache.with_name(f"{cache.name}-test")
    if (data := _cached(cache, splits=("test",))) is not None:
        return data
    faults.point("data_load")
    data = layout.load(folder, skip_bad=skip_bad, progress=progress, splits=("test",))
    _write_cache(cache, data)
    return data


def data_cache_folder(data_dir: str, *, cache_dir: Path | None = None, skip_bad: bool = False) -> Path:
    """The decode cache entry `load_dataset` reads and writes for this folder (it may not exist yet)."""
    return _locate(data_dir, cache_dir, skip_bad)[2]


def _locate(data_dir: str, cache_dir: Path | None, skip_bad: bool) -> tuple[Layout, Path, Path]:
    """(layout, data folder, cache entry) of a data folder: the entry is keyed by the source's files."""
    # Resolved, so the cached source description names the folder the same way from any cwd.
    try:
        resolved = Path(resolve_data_dir(data_dir)).resolve()
    except (OSError, RuntimeError) as err:  # RuntimeError: a symbolic link loop
        raise DataError(f"Data folder {str(data_dir)!r} cannot be opened ({plain_message(err)}).") from err
    layout, folder = detect_layout(resolved)
    key = _cache_key(layout.name, folder, layout.source_files(folder), skip_bad)
    return layout, folder, Path(cache_dir or default_cache_dir()) / f"cifar10-{key}"


def _test_only(data: ImageData) -> ImageData:
    return replace(data, x_train=data.x_train[:0], y_train=data.y_train[:0])


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
    paths = layout.files(folder, data, split)
    labels = data.y_train if split == "train" else data.y_test
    if paths is None or len(paths) != len(labels):
        return None
    if class_names is None:
        return paths
    # select_classes keeps the images of the named classes in their order.
    keep = np.isin(labels, [data.class_names.index(n) for n in class_names if n in data.class_names])
    return [p for p, kept in zip(paths, keep) if kept]


# ---------------------------------------------------------------- cache

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
        h.update(f"{rel}:{signature};".encode("utf-8", "surrogateescape"))  # a file name that is not UTF-8 too
    return h.hexdigest()[:16]


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


def _cached(cache: Path, splits: tuple[str, ...] = SPLITS) -> ImageData | None:
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


def _read_cache(cache: Path, splits: tuple[str, ...] = SPLITS) -> ImageData:
    """A cache entry's arrays; the splits left out of `splits` come back empty without being read.
    ValueError if an array's size differs from the one recorded or the arrays do not fit together."""
    meta = bounded_json.read(cache / "meta.json")
    for name, size in meta.get("bytes", {}).items():  # entries written before sizes were recorded have none
        if name in ARRAYS and (cache / f"{name}.npy").stat().st_size != size:
            raise ValueError(f"{name}.npy holds {(cache / f'{name}.npy').stat().st_size} bytes, {size} were written")
    empty = dict(zip(("x", "y"), empty_split()))
    arrays = {f"{a}_{split}": np.load(cache / f"{a}_{split}.npy", allow_pickle=False) if split in splits else empty[a]
              for split in SPLITS for a in ("x", "y")}
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 4 or x.shape[1:] != (NATIVE_SIZE, NATIVE_SIZE, 3) or y.shape != (len(x),):
            raise ValueError(f"its {split} arrays have shapes {x.shape} and {y.shape}")
    # Caches written before class lists came from the data hold CIFAR-10's ten classes.
    return ImageData(**arrays, source=meta["source"], skipped=meta["skipped"], class_names=tuple(meta.get("class_names", CLASS_NAMES)))
