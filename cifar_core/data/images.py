"""Image files into arrays: the decoded dataset (ImageData), the error a bad dataset raises, listing a folder's
image files, and decoding them under the uploads' limits (image_limits). Every layout decodes through here."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from cifar_core.base.errors import StudioError
from cifar_core.data.image_limits import check_pixels, check_size, plain_message, read_image_file, webp_canvas_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NATIVE_SIZE = 32
SPLITS = ("train", "test")

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


def empty_split() -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a split with no images."""
    return np.zeros((0, NATIVE_SIZE, NATIVE_SIZE, 3), np.uint8), np.zeros(0, np.int64)


def skipped_paths(data: ImageData) -> set[str]:
    """The files skipped as unreadable (--skip-bad) while `data` was decoded: they have no image."""
    return {message.split(": ", 1)[0] for message in data.skipped}  # each message starts with the path


# ---------------------------------------------------------------- listing


def class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir()) if split_dir.is_dir() else []


def folder_files(folder: Path, suffixes: tuple[str, ...] | None = None) -> list[Path]:
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


def image_files(folder: Path) -> list[Path]:
    return folder_files(folder, IMAGE_SUFFIXES)


def image_count(folder: Path) -> int:
    """len(image_files(folder)) without building and sorting the paths: the sidebar counts on every page run."""
    with os.scandir(folder) as it:
        return sum(1 for e in it if e.name.lower().endswith(IMAGE_SUFFIXES) and _listed(e))


# ---------------------------------------------------------------- decoding


def _decode(path: Path) -> np.ndarray:
    """One training image as uint8 RGB 32x32, with the uploads' limits on file size and declared pixels."""
    data = read_image_file(path)
    if webp_size := webp_canvas_size(data):
        check_pixels(webp_size)
    with Image.open(io.BytesIO(data)) as im:
        check_pixels(im.size)
        return native_pixels(im)


def native_pixels(im: Image.Image) -> np.ndarray:
    """An opened image as the studio sees it: uint8 RGB 32x32. The loader and the health report's duplicate
    finder both decode through it, so they compare the same pixels."""
    im = im.convert("RGB")
    if im.size != (NATIVE_SIZE, NATIVE_SIZE):
        im = im.resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def decode_all(paths: list[Path], skip_bad: bool, progress: Progress | None, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
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
    x = np.stack(images) if images else empty_split()[0]
    return x, np.asarray(kept, dtype=np.int64), bad


def require_nonempty(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for split, (x, _) in arrays.items():
        if len(x) == 0:
            raise DataError(f"The {split} split is empty after removing unreadable files.")


def to_input_image(data: bytes, size: int) -> np.ndarray:
    """An image file's bytes as uint8 RGB `size`x`size`, under the uploads' limits (image_limits);
    ImageError or Pillow's errors for a file that is not a readable image."""
    check_size(len(data))
    if webp_size := webp_canvas_size(data):
        check_pixels(webp_size)
    with Image.open(io.BytesIO(data)) as im:
        check_pixels(im.size)
        # JPEG only: decode at a reduced scale close to the target (much less memory and time for photos).
        im.draft("RGB", (size * 2, size * 2))
        # Phone photos store their rotation in EXIF; applied once here, so the image is stored upright.
        im = ImageOps.exif_transpose(im).convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8)
