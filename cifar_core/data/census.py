"""The census of an image-folder dataset: its class folders, their image counts and what makes it unusable,
from directory listings alone (nothing is decoded). The loader, the health report and the import all read it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from cifar_core.data.classes import class_names_problem
from cifar_core.data.images import SPLITS, DataError, image_count

# Per class: one training image goes to the validation split and at least one must stay to train on;
# the test split needs one to measure the class at all.
MIN_TRAIN_IMAGES = 2
MIN_TEST_IMAGES = 1

Problem = Callable[..., None]  # problem(kind, class or None, message, blocking=True) records one


def folder_classes(folder: Path) -> tuple[str, ...]:
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

    counts: dict[str, dict[str, int]] = {split: {} for split in SPLITS}
    links: set[str] = set()
    for split in SPLITS:
        _count_split(folder, split, counts[split], links, problem)
    classes = sorted(set(counts["train"]) | set(counts["test"]))
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
    return {"classes": classes, "counts": counts, "problems": problems}


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
            if entry.is_symlink() and not _is_file(entry):
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
