"""Image folders: <root>/{train,test}/<class>/*.{png,jpg,jpeg}.

The class list is the folder names, or in an imported dataset the class names its dataset.json records for its
folders (census.class_folders), in the dataset's own order when it gives one (census.in_order): the record's
order, or a classes.txt in <root>; otherwise sorted.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cifar_core.base.errors import is_text
from cifar_core.data.census import CLASS_ORDER_FILE, DATASET_FILE, class_folders, folder_classes, in_order, listed_order
from cifar_core.data.images import (SPLITS, DataError, ImageData, Progress, class_dirs, decode_all, empty_split, folder_files,
                                    image_count, require_nonempty, skipped_paths)
from cifar_core.data.layouts.base import Layout


class Folders(Layout):
    name = "folders"
    help = "image folders: <dir>/train/<class>/*.png|jpg and <dir>/test/<class>/*.png|jpg"
    decodes_part = True
    class_folders = True

    def detect(self, root: Path) -> Path | None:
        return root if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()) else None

    def classes(self, folder: Path) -> tuple[str, ...]:
        mapping, _ = class_folders(folder)
        return tuple(in_order((mapping.get(d.name, d.name) for d in _class_dirs(folder / "train")), mapping,
                              listed_order(folder)))

    def counts(self, folder: Path) -> dict[str, int]:
        return {split: sum(image_count(d) for d in _class_dirs(folder / split)) for split in SPLITS}

    def source_files(self, folder: Path) -> list[Path]:
        # Sorting names, not Path objects: Path comparisons dominate a cached load of 60,000 files. The files that
        # give the class order are sources too: a changed order is a new cache entry, with its labels in that order.
        order = [folder / name for name in (CLASS_ORDER_FILE, DATASET_FILE) if (folder / name).is_file()]
        return order + [d / name for split in SPLITS for d in _class_dirs(folder / split) for name in sorted(os.listdir(d))]

    def files(self, folder: Path, data: ImageData, split: str) -> list[str]:
        bad = skipped_paths(data)
        folders = {name: disk for disk, name in class_folders(folder)[0].items()}
        return [str(p) for name in data.class_names for p in folder_files(folder / split / folders.get(name, name))
                if str(p) not in bad]

    def load(self, folder: Path, *, skip_bad: bool, progress: Progress | None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        """With `limit`, only the first `limit` training images of each class are decoded."""
        folders = folder_classes(folder)
        names = tuple(folders)
        arrays, skipped = {split: empty_split() for split in SPLITS}, []
        for split in splits:
            split_dir = folder / split
            paths, labels = [], []
            for label, name in enumerate(names):
                files = folder_files(split_dir / folders[name])
                if split == "train" and limit:
                    files = files[:limit]
                paths += files
                labels += [label] * len(files)
            if not paths:
                raise DataError(f"The {split} split in {split_dir} has no images.")
            x, kept, bad = decode_all(paths, skip_bad, progress, f"{split} split")
            arrays[split] = (x, np.asarray(labels, dtype=np.int64)[kept])
            skipped += bad
        require_nonempty({split: arrays[split] for split in splits})
        return ImageData(*arrays["train"], *arrays["test"], source=f"image folders at {folder}", class_names=names, skipped=skipped)


def _class_dirs(split_dir: Path) -> list[Path]:
    """The class folders of a split: a folder whose name is not UTF-8 text is none (census names it)."""
    return [d for d in class_dirs(split_dir) if is_text(d.name)]


LAYOUT = Folders()
