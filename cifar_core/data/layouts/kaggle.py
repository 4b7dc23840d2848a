"""Kaggle's CIFAR-10: <root>/train/<id>.png with <root>/trainLabels.csv (columns id,label).

Kaggle's CIFAR-10 test labels were never published, so this layout's test split is a seeded,
stratified hold-out of its training images (KAGGLE_TEST_FRACTION).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from cifar_core.data.classes import class_names_problem
from cifar_core.data.images import (SPLITS, DataError, ImageData, Progress, decode_all, image_count, image_files, require_nonempty,
                                    skipped_paths)
from cifar_core.data.layouts.base import Layout
from cifar_core.data.splits import stratified_split

KAGGLE_TEST_FRACTION = 0.1
LABELS_FILE = "trainLabels.csv"


class Kaggle(Layout):
    name = "kaggle"
    help = "Kaggle: <dir>/train/<id>.png with <dir>/trainLabels.csv (columns id,label)"

    def detect(self, root: Path) -> Path | None:
        return root if (root / LABELS_FILE).is_file() else None

    def classes(self, folder: Path) -> tuple[str, ...]:
        with open(folder / LABELS_FILE, newline="") as f:
            return tuple(sorted({row.get("label", "") for row in csv.DictReader(f)}))

    def counts(self, folder: Path) -> dict[str, int]:
        return {"train": image_count(folder / "train")}

    def source_files(self, folder: Path) -> list[Path]:
        return [folder / LABELS_FILE] + image_files(folder / "train")

    def files(self, folder: Path, data: ImageData, split: str) -> list[str]:
        with open(folder / LABELS_FILE, newline="") as f:
            rows = [(str(folder / "train" / f"{row['id']}.png"), row["label"]) for row in csv.DictReader(f)]
        bad = skipped_paths(data)
        rows = [row for row in rows if row[0] not in bad]
        # The same seeded hold-out as `load`.
        test_idx, train_idx = stratified_split(np.asarray([data.class_names.index(label) for _, label in rows]),
                                               KAGGLE_TEST_FRACTION, seed=0)
        return [rows[i][0] for i in (train_idx if split == "train" else test_idx)]

    def load(self, folder: Path, *, skip_bad: bool, progress: Progress | None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        with open(folder / LABELS_FILE, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"id", "label"} <= set(rows[0]):
            raise DataError(f"{folder / LABELS_FILE} must have columns 'id' and 'label'.")
        names = tuple(sorted({r["label"] for r in rows}))
        if problem := class_names_problem(names):
            raise DataError(f"The labels in {folder / LABELS_FILE} cannot all be class names: {problem}.")
        paths = [folder / "train" / f"{r['id']}.png" for r in rows]
        missing = [r["id"] for r, p in zip(rows, paths) if not p.is_file()]
        if missing:
            raise DataError(f"{len(missing)} id(s) in trainLabels.csv have no image in {folder / 'train'}; first: {', '.join(missing[:5])}.")
        x, kept, bad = decode_all(paths, skip_bad, progress, "train split")
        y = np.asarray([names.index(r["label"]) for r in rows], dtype=np.int64)[kept]
        test_idx, train_idx = stratified_split(y, KAGGLE_TEST_FRACTION, seed=0)
        arrays = {"train": (x[train_idx], y[train_idx]), "test": (x[test_idx], y[test_idx])}
        require_nonempty(arrays)
        return ImageData(*arrays["train"], *arrays["test"], source=f"Kaggle layout at {folder} (test = 10% stratified hold-out of train)",
                         class_names=names, skipped=bad)


LAYOUT = Kaggle()
