"""Imported datasets: a user's images, brought in once as artifacts/datasets/NAME/{train,test}/<class>/*.png.

`import_dataset` reads a .zip, .tar(.gz) or folder through archive_import (which
refuses hostile sources and skips unusable members with a count), finds its
layout (train/<class> + test/<class>, or <class> alone, then a stratified,
seeded test split), resizes every image once to the studio's 32x32 input and
writes it as PNG, builds the dataset in a hidden folder beside datasets/NAME
and swaps it into place (base/folder_swap.py: nothing half-written is ever
listed, a name being imported is taken, a kill -9 loses neither the old dataset
nor the new one), then decodes and caches it through the loader. `--data-dir
NAME` finds it again (`locate.resolve_data_dir`).

A class is stored under a folder name safe on every system (`paths.file_part`:
a class name of 100 emoji is 400 bytes, more than a file name may have) and
shown under its real name: dataset.json maps each folder to its class, in the
classes' order (`census.class_folders` reads it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Callable

from cifar_core.base import faults, folder_swap
from cifar_core.base.errors import StudioError, shown
from cifar_core.base.paths import file_part
from cifar_core.data.archive_import import SKIP_REASONS, Limits, images, split_name
from cifar_core.data.census import CLASS_ORDER_FILE, DATASET_FILE, folder_census, in_order
from cifar_core.data.images import NATIVE_SIZE, DataError, to_input_image
from cifar_core.data.loader import load_dataset
from cifar_core.data.locate import datasets_root, name_problem
from cifar_core.data.splits import stratified_split

SPLITS = ("train", "test")

Progress = Callable[[int, int, str], None]


class DatasetError(StudioError, ValueError):
    """A dataset cannot be imported or found as asked; the message says why and what to do."""

    exit_code = 2


def list_datasets(artifacts: Path | None = None) -> list[dict]:
    """The imported datasets, by name: [{"name", "path", "classes", "counts": {"train": {class: n}, "test": {...}},
    "problems": the census' problems}]. Counts are read from the folders (a few directory listings), so they are
    right even if files were changed."""

    root = datasets_root(artifacts)
    if not root.is_dir():
        return []
    with folder_swap.locked(root, wait=False) as free:
        if free and os.access(root, os.W_OK):  # a dataset a killed --replace left aside is put back first
            folder_swap.recover(root, remove=False)
    out = []
    for folder in sorted(root.iterdir()):
        # .tmp-* and .old-*: being written or removed; a folder no import names this way was put there by hand
        if name_problem(folder.name) or not folder.is_dir() or folder.is_symlink():
            continue
        census = folder_census(folder)
        out.append({"name": folder.name, "path": str(folder), "classes": census["classes"], "counts": census["counts"],
                    "problems": census["problems"]})
    return out


def import_dataset(
    source: str | Path,
    name: str,
    *,
    artifacts: Path | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    replace: bool = False,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> dict:
    """Import `source` (.zip, .tar, .tar.gz/.bz2/.xz, or a folder) as the dataset `name`.

    Returns {"name", "path", "classes", "counts": {"train": {class: n}, "test": {...}}, "layout",
    "split": {"made", "test_fraction", "seed"}, "skipped": {reason: count} (archive_import.SKIP_REASONS),
    "problems": [{"kind", "class", "message", "blocking"}]}, also stored as dataset.json in its folder.

    Args:
        test_fraction, seed: the stratified test split made when the source has class folders only.
        replace: replace an existing dataset of that name (otherwise refused).
        limits: archive_import.Limits (tests lower them).
    Raises:
        DatasetError (a bad name, an existing one) or archive_import.ArchiveError (a refused source);
        nothing is left behind either way.
    """
    if problem := name_problem(name):
        raise DatasetError(problem)
    if not (isinstance(test_fraction, (int, float)) and 0 < test_fraction < 1):
        raise DatasetError(f"the test fraction must be a number between 0 and 1, got {test_fraction!r}")
    root = datasets_root(artifacts)
    final = root / name
    source = Path(source)
    root.mkdir(parents=True, exist_ok=True)
    with folder_swap.locked(root):
        folder_swap.recover(root)  # what killed imports left: put back, or removed when their process is dead
        _claim(root, name, replace)
        build = folder_swap.new_build(root, name)
    try:
        report = _build(source, build, Limits() if limits is None else limits, test_fraction, seed, progress)
        report = {"name": name, "path": str(final), **report}
        (build / DATASET_FILE).write_text(json.dumps({**report, "source": source.name, "imported": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
        checked = _census_problems(build, final)  # before it is in place: a census that fails leaves nothing
        faults.point("import_built")
        with folder_swap.locked(root):
            _claim(root, name, replace, build)
            folder_swap.swap_into_place(build, final)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    report["problems"] = checked + report["problems"]
    if not any(p["blocking"] for p in report["problems"]):
        report["problems"] += _cache(final, Path(artifacts) / "cache" if artifacts else None, progress)
    return report


def _claim(root: Path, name: str, replace: bool, build: Path | None = None) -> None:
    """DatasetError if `name` is taken: a dataset of that name exists (unless `replace`), or another live
    process is importing one (in another folder than `build`, this import's own)."""
    final = root / name
    if (final.exists() or final.is_symlink()) and not replace:
        raise DatasetError(f"a dataset named {name!r} exists already ({final}); choose another name, or replace it "
                           "(--replace, or the page's 'Replace').")
    if (builder := folder_swap.live_builder(root, name, build)) is not None:
        raise DatasetError(f"the name {name!r} is taken: another import of it is under way (process {builder}); "
                           "wait for it to finish, or choose another name.")


def _census_problems(build: Path, final: Path) -> list[dict]:
    """The census' problems of the dataset built in `build`, worded for its place `final`."""
    return [{**p, "message": p["message"].replace(str(build), str(final))} for p in folder_census(build)["problems"]]


def _cache(folder: Path, cache_dir: Path | None, progress: Progress | None) -> list[dict]:
    """Decode and cache the new dataset through the loader, so its first training does not decode it again."""

    try:
        load_dataset(str(folder), cache_dir=cache_dir, progress=progress)
    except (DataError, OSError) as err:
        return [{"kind": "not_cached", "class": None, "blocking": False,
                 "message": f"the images were imported but not cached ({err}); the first training decodes them."}]
    return []


def _build(source: Path, build: Path, limits, test_fraction: float, seed: int, progress: Progress | None) -> dict:
    """Read `source` into `build`/{train,test}/<class folder>/: every image decoded, resized and written one at
    a time (memory stays bounded), first under a staging name, then moved once the layout and the class names
    are checked."""
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    read, order = _read_images(source, build / ".staging", limits, skipped, examples, progress)
    placed, layout, wrapper = _place(read, skipped, examples)
    if not placed:
        raise DatasetError(f"{shown(source.name)} holds no usable images in class folders ({_skipped_text(skipped)}). "
                           "Give class folders of images: <class>/*.jpg, or train/<class>/ and test/<class>/.")
    classes = in_order({cls for _, cls, _ in placed}, {}, order)  # the source's classes.txt order, else sorted
    folders = _class_folders(classes)
    made = layout == "classes" or not any(split == "test" for split, _, _ in placed)
    if made:
        placed = _split(placed, classes, test_fraction, seed)
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    for split, cls, (parts, path) in placed:
        target = build / split / folders[cls]
        target.mkdir(parents=True, exist_ok=True)
        os.rename(path, target / f"{path.stem}-{_safe_stem(parts[-1])}.png")
        counts[split][cls] = counts[split].get(cls, 0) + 1
    shutil.rmtree(build / ".staging")
    problems = [{"kind": "skipped", "class": None, "blocking": False,
                 "message": f"{n} skipped: {SKIP_REASONS[reason]} (e.g. {', '.join(map(shown, examples.get(reason, [])[:3]))})"}
                for reason, n in sorted(skipped.items())]
    return {"classes": classes, "class_folders": {folders[cls]: cls for cls in classes},
            "counts": {split: dict(sorted(c.items())) for split, c in counts.items()}, "layout": layout, "wrapper": wrapper,
            "split": {"made": made, "test_fraction": test_fraction if made else None, "seed": seed if made else None},
            "skipped": dict(sorted(skipped.items())), "problems": problems}


def _read_images(source: Path, staging: Path, limits, skipped: Counter, examples: dict,
                 progress: Progress | None) -> tuple[list, list[str] | None]:
    """(member's path parts, staged PNG) of every image of `source` that decodes, the others counted; and the
    lines of the source's classes.txt, if it has one."""
    from PIL import Image

    total, items = images(source, limits, skipped, examples)
    staging.mkdir()
    read: list[tuple[tuple[str, ...], Path]] = []
    order: list[str] | None = None
    for done, (member, data) in enumerate(items, start=1):
        if split_name(member)[-1].lower() == CLASS_ORDER_FILE:
            order = [line.rstrip() for line in data.decode("utf-8-sig", "replace").splitlines() if line.strip()]
            continue
        try:
            pixels = to_input_image(data, NATIVE_SIZE)
        except Exception:  # Pillow raises many types for damaged or unsupported files
            skipped["unreadable_images"] += 1
            if len(examples.setdefault("unreadable_images", [])) < 5:
                examples["unreadable_images"].append(member)
        else:
            path = staging / f"{len(read):06d}.png"
            Image.fromarray(pixels).save(path, format="PNG")
            read.append((split_name(member), path))
        if progress and (done % 200 == 0 or done == total):
            progress(done, total, "importing images")
    return read, order


def _class_folders(classes: list[str]) -> dict[str, str]:
    """Each class's folder name (`paths.file_part`: itself when it is safe as one on every system, else a
    safe form with a short hash), after checking the names: DatasetError for names that cannot be class
    names, or that look alike (a pair that differs only in case, Unicode form, spaces or invisible characters)."""
    from cifar_core.data.classes import class_names_problem, lookalike_problem

    if problem := class_names_problem(classes) or lookalike_problem(classes):
        raise DatasetError(f"the class folders cannot all be class names: {problem}; rename them and import again.")
    folders = {cls: file_part(cls) for cls in classes}
    if len({f.casefold() for f in folders.values()}) < len(classes):  # a hash collision: never seen, but never merged
        raise DatasetError("two class names give the same folder name; rename one of them and import again.")
    return folders


def _split(placed: list, classes: list[str], test_fraction: float, seed: int) -> list:
    """`placed` with a stratified, seeded share of each class moved to the test split."""
    import numpy as np

    placed = [("train", cls, p) for _, cls, p in placed]
    index = {cls: i for i, cls in enumerate(classes)}
    labels = np.asarray([index[cls] for _, cls, _ in placed])
    held, _ = stratified_split(labels, test_fraction, seed)
    for i in held:
        placed[i] = ("test", placed[i][1], placed[i][2])
    return placed


def _place(read: list[tuple[tuple[str, ...], Path]], skipped: Counter, examples: dict) -> tuple[list, str, str | None]:
    """Each image's (split or None, class, (parts, staged file)), the layout ("splits" or "classes") and the
    wrapping folder removed (None if none). Images elsewhere are skipped as outside class folders."""
    paths_ = [parts for parts, _ in read]
    wrapper = None
    tops = {p[0] for p in paths_ if len(p) > 1}
    # One folder around everything (what zipping a folder gives), unless it is train/ itself; a lone test/ is a
    # wrapper too: its class folders are all there is, so the split is made from them.
    if len(tops) == 1 and (top := next(iter(tops))).lower() != "train" and any(len(p) >= 3 for p in paths_):
        wrapper = top
    placed = []
    rest = [(p[1:] if wrapper and len(p) > 1 and p[0] == wrapper else p, (p, f)) for p, f in read]
    layout = "splits" if any(len(p) == 3 and p[0].lower() == "train" for p, _ in rest) else "classes"
    for parts, item in rest:
        if layout == "splits" and len(parts) == 3 and parts[0].lower() in SPLITS:
            placed.append((parts[0].lower(), parts[1], item))
        elif layout == "classes" and len(parts) == 2:
            placed.append((None, parts[0], item))
        else:
            skipped["outside_class_folders"] += 1
            if len(examples.setdefault("outside_class_folders", [])) < 5:
                examples["outside_class_folders"].append("/".join(item[0]))
    return placed, layout, wrapper


def _safe_stem(filename: str) -> str:
    """A member's file name, reduced to characters safe in any file name (for recognising images later)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", Path(filename).stem)[:60].strip("_") or "image"


def _skipped_text(skipped: Counter) -> str:
    if not skipped:
        return "no image files"
    return "; ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(skipped.items()))
