"""Image folders: <root>/{train,test}/<class>/*.{png,jpg,jpeg}.

The class list is the folder names in the dataset's own order when it gives one (`class_order`): a classes.txt
in <root> (one name per line), else the "classes" of an imported dataset's dataset.json; otherwise sorted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from cifar_core.data.census import folder_classes
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
        return class_order(folder, [d.name for d in class_dirs(folder / "train")])

    def counts(self, folder: Path) -> dict[str, int]:
        return {split: sum(image_count(d) for d in class_dirs(folder / split)) for split in SPLITS}

    def source_files(self, folder: Path) -> list[Path]:
        # Sorting names, not Path objects: Path comparisons dominate a cached load of 60,000 files. The order files
        # are sources too: a changed order is a new cache entry, with its labels in the new order.
        order = [folder / name for name in ORDER_FILES if (folder / name).is_file()]
        return order + [d / name for split in SPLITS for d in class_dirs(folder / split) for name in sorted(os.listdir(d))]

    def files(self, folder: Path, data: ImageData, split: str) -> list[str]:
        bad = skipped_paths(data)
        return [str(p) for name in data.class_names for p in folder_files(folder / split / name) if str(p) not in bad]

    def load(self, folder: Path, *, skip_bad: bool, progress: Progress | None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        """With `limit`, only the first `limit` training images of each class are decoded."""
        names = class_order(folder, folder_classes(folder))
        arrays, skipped = {split: empty_split() for split in SPLITS}, []
        for split in splits:
            split_dir = folder / split
            paths, labels = [], []
            for label, name in enumerate(names):
                files = folder_files(split_dir / name)
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


def class_order(folder: Path, names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`names` (the class folders) in the dataset's own order: the first of ORDER_FILES that lists exactly these
    names, each once; else sorted. A file that lists other names is ignored (the folders are the truth)."""
    for listed in (_lines(folder / ORDER_FILES[0]), _imported_classes(folder / ORDER_FILES[1])):
        if listed is not None and len(listed) == len(set(listed)) and set(listed) == set(names):
            return tuple(listed)
    return tuple(sorted(names))


ORDER_FILES = ("classes.txt", "dataset.json")
MAX_ORDER_BYTES = 1 << 20  # a class list is small; a larger file is not one


def _lines(path: Path) -> list[str] | None:
    """The non-empty lines of a classes.txt (trailing spaces and a BOM dropped), or None without a readable one."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_ORDER_BYTES:
            return None
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def _imported_classes(path: Path) -> list[str] | None:
    """The "classes" list of an imported dataset's dataset.json, or None."""
    try:
        if not path.is_file() or path.stat().st_size > MAX_ORDER_BYTES:
            return None
        classes = json.loads(path.read_text(encoding="utf-8")).get("classes")
    except (OSError, ValueError, AttributeError):
        return None
    return classes if isinstance(classes, list) and all(isinstance(c, str) for c in classes) else None


LAYOUT = Folders()
