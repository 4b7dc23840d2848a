"""The census of an image-folder dataset: its class folders, their image counts and what makes it unusable,
from directory listings alone (nothing is decoded). The loader, the health report and the import all read it.

A class folder's name is its class name, except in an imported dataset whose dataset.json maps folder names
to class names (`class_folders`): there a class is stored under a name safe on every system and shown
under its real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cifar_core.base import bounded_json
from cifar_core.base.errors import is_text, shown
from cifar_core.data.classes import class_names_problem, lookalike_problem
from cifar_core.data.images import SPLITS, DataError, image_count

DATASET_FILE = "dataset.json"

# Per class: one training image goes to the validation split and at least one must stay to train on;
# the test split needs one to measure the class at all.
MIN_TRAIN_IMAGES = 2
MIN_TEST_IMAGES = 1

Problem = Callable[..., None]  # problem(kind, class or None, message, blocking=True) records one


def folder_classes(folder: Path) -> dict[str, str]:
    """The classes of an image-folder dataset, in order, each with its folder's name: {class: folder}; DataError
    with every problem of `folder_census` that makes it unusable (a missing or empty class, a class folder
    that is a link, ...)."""
    census = folder_census(folder)
    if blocking := [p["message"] for p in census["problems"] if p["blocking"]]:
        raise DataError(f"The dataset in {shown(folder, 300)} cannot be used yet:\n  " + "\n  ".join(blocking))
    return {name: census["folders"][name] for name in census["classes"]}


def in_order(names, mapping: dict[str, str], listed: list[str] | None = None) -> list[str]:
    """Class names in the dataset's own order: the order dataset.json's `mapping` records (an import), then the
    others sorted; without a record, the order of `listed` (a classes.txt) when it names exactly these classes,
    each once; else sorted. A list that names other classes is ignored: the folders are the truth."""
    names = set(names)
    if not mapping and listed and len(listed) == len(set(listed)) and set(listed) == names:
        return list(listed)
    order = {name: i for i, name in enumerate(mapping.values())}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


CLASS_ORDER_FILE = "classes.txt"  # one class name per line: the order a dataset's classes are shown and numbered in
MAX_CLASS_ORDER_BYTES = 1 << 20  # a class list is small; a larger file is not one


def listed_order(folder: Path) -> list[str] | None:
    """The non-empty lines of `folder`'s classes.txt (trailing spaces and a BOM dropped), or None without a
    readable one."""
    path = Path(folder) / CLASS_ORDER_FILE
    try:
        if not path.is_file() or path.stat().st_size > MAX_CLASS_ORDER_BYTES:
            return None
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def class_folders(folder: Path) -> tuple[dict[str, str], str | None]:
    """({folder name: class name}, in the classes' order, as an imported dataset's dataset.json records it;
    why that record cannot be used, or None). Empty without a record: each folder is named as its class."""
    file = Path(folder) / DATASET_FILE
    if not file.is_file():
        return {}, None
    try:
        data = bounded_json.read(file)
    except (bounded_json.JSONError, OSError) as err:
        return {}, f"{file} cannot be read ({shown(err, 200)})"
    mapping = data.get("class_folders") if isinstance(data, dict) else None
    if mapping is None:
        return {}, None  # imported before classes had folders of their own: each folder is its class's name
    if (not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values())
            or any(not k or k in (".", "..") or "/" in k or k.startswith(".") for k in mapping)
            or (len(mapping) >= 2 and class_names_problem(list(mapping.values())))):
        return {}, f"{file} has a damaged class_folders record (folder name: class name)"
    return mapping, None


def folder_census(folder: Path) -> dict:
    """The class folders of an image-folder dataset, their image counts and what makes it unusable, without
    decoding anything (a few directory listings: fast on CIFAR-10's 60,000 files).

    Returns {"classes": the class names of train/ and test/ together, in order (`in_order`), "counts": {"train": {class: images},
    "test": {...}}, "problems": [{"kind", "class", "message", "blocking"}]}. Blocking problems: a missing split,
    a class folder that is a link (never followed: a link to its own parent would be a class of other classes'
    folders), a class missing from one split, an empty class folder or split, fewer than MIN_TRAIN_IMAGES training
    or MIN_TEST_IMAGES test images in a class, fewer than two classes. Each message says how to fix it.
    """
    folder = Path(folder)
    problems: list[dict] = []

    def problem(kind: str, name: str | None, message: str, blocking: bool = True) -> None:
        problems.append({"kind": kind, "class": name, "message": message, "blocking": blocking})

    mapping, damaged = class_folders(folder)
    if damaged:
        problem("dataset_file", None, f"{damaged}: its classes are shown under their folder names.", blocking=False)
    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    links: set[str] = set()
    folders: dict[str, str] = {}
    for split in SPLITS:
        _count_split(folder, split, counts[split], links, problem)
        counts[split] = _named(counts[split], mapping, folders, problem)
    links = {mapping.get(name, name) for name in links}
    classes = in_order(set(counts["train"]) | set(counts["test"]), mapping, listed_order(folder))
    empty_splits = {split for split in SPLITS if counts[split] and not sum(counts[split].values())}
    for split in sorted(empty_splits, reverse=True):  # train first
        problem("empty_split", None, f"The {split} split in {folder / split} has no images (.png, .jpg, .jpeg); add them "
                "to its class folders.")
    for name in classes:
        if name not in links:
            _class_problems(folder, name, counts, empty_splits, problem)
    if len(classes) - len(links) < 2 and not any(p["kind"] == "missing_split" for p in problems):
        problem("too_few_classes", None, f"{folder / 'train'} must hold at least two class folders, found: "
                f"{', '.join(classes) or 'none'}. Add a folder of images for each class.")
    elif len(classes) >= 2 and (bad_names := class_names_problem(classes)):  # folder names become labels on every page and in file names
        problem("class_names", None, f"The class folders in {folder} cannot all be class names: {bad_names}; rename them.")
    elif lookalike := lookalike_problem(classes):
        problem("lookalike_names", None, f"In {folder}, {lookalike}: rename one of them, or the pages and "
                "predictions will show two classes that read the same.", blocking=False)
    return {"classes": classes, "counts": counts, "problems": problems, "folders": folders}


def _named(counts: dict[str, int], mapping: dict[str, str], folders: dict[str, str], problem: Problem) -> dict[str, int]:
    """`counts` by class name instead of folder name; each class's folder recorded in `folders`."""
    out: dict[str, int] = {}
    for folder, n in counts.items():
        name = mapping.get(folder, folder)
        if folders.setdefault(name, folder) != folder:
            problem("class_names", name, f"two class folders ({shown(folders[name])}, {shown(folder)}) are both the "
                    f"class {shown(name)!r}; remove one of them.")
            continue
        out[name] = n
    return out


def _count_split(folder: Path, split: str, counts: dict[str, int], links: set[str], problem: Problem) -> None:
    """Count the images of each class folder of `split` into `counts`; class folders that are links go to
    `links` (counted 0) and files outside class folders are reported."""
    split_dir = folder / split
    if not split_dir.is_dir():
        problem("missing_split", None, f"{split_dir} is missing: an image-folder dataset needs train/<class>/ and "
                "test/<class>/ folders (`python -m cifar_core data import` makes a test split from class folders).")
        return
    stray = []
    with os.scandir(split_dir) as it:
        for entry in sorted(it, key=lambda e: e.name):
            if not is_text(entry.name) and entry.is_dir():
                problem("class_names", None, f"{split}/{shown(entry.name)} cannot be a class folder: its name is not "
                        "UTF-8 text (e.g. caf\\xe9 written by an old tool); rename it (e.g. to café).")
            elif entry.is_symlink() and not _is_file(entry):
                links.add(entry.name)
                counts[entry.name] = 0
                problem("class_link", entry.name, f"{split}/{entry.name} is {_link_text(entry, split_dir)}; a class "
                        "folder must be a real folder. Replace the link with a folder holding the images, or remove it.")
            elif entry.is_dir():
                counts[entry.name] = image_count(Path(entry.path))
            elif not entry.name.startswith("."):
                stray.append(entry.name)
    if stray:
        problem("stray_files", None, f"{len(stray)} file(s) directly in {split}/ are in no class folder and are ignored "
                f"(e.g. {', '.join(stray[:3])}); move them into train|test/<class>/ to use them.", blocking=False)


def _class_problems(folder: Path, name: str, counts: dict[str, dict[str, int]], empty_splits: set[str], problem: Problem) -> None:
    """Report what keeps the class `name` from being trained on: a split without its folder, an empty folder, too few images."""
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


def _present(folder: Path) -> set[str]:
    return {split for split in SPLITS if (folder / split).is_dir()}


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
