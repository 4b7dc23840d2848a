"""What a dataset layout is: one way images and labels can sit on disk, and how the loader reads it.

Each layout module (folders.py, kaggle.py, batches.py, keras_download.py) holds one `Layout`; the
registry (`layouts/__init__.py`) lists those found in a data folder. The loader, the health report and
the pages ask the layout object, never its name, what it holds and how to decode it.
"""

from __future__ import annotations

from pathlib import Path

from cifar_core.data.images import SPLITS, ImageData, Progress


class Layout:
    """A dataset layout. A layout found in a data folder implements every method; Keras' download (no folder)
    only `classes` and `load`."""

    name: str  # as describe_source, the sidebar and the decode cache's key spell it
    help: str  # its line in the accepted-layouts message: "<what>: <where its files are>"
    decodes_part = False  # `load` honours `limit` and `splits`, decoding no more than asked
    class_folders = False  # its images sit in train|test/<class>/ folders, which the health report reads

    def detect(self, root: Path) -> Path | None:
        """The folder holding this layout's files when `root` is (or holds) a dataset in it, else None."""
        raise NotImplementedError

    def classes(self, folder: Path | None) -> tuple[str, ...]:
        """The class names, from folder names or a labels file: nothing is counted or decoded."""
        raise NotImplementedError

    def counts(self, folder: Path) -> dict[str, int]:
        """Images per split, without decoding: a cheap summary for status displays."""
        raise NotImplementedError

    def source_files(self, folder: Path) -> list[Path]:
        """Every file the decoded arrays come from: their names, sizes and times key the decode cache."""
        raise NotImplementedError

    def files(self, folder: Path, data: ImageData, split: str) -> list[str] | None:
        """The file behind each image of `data`'s `split` (as `load` decoded it), in order; None when the images
        have no files of their own."""
        return None

    def load(self, folder: Path | None, *, skip_bad: bool, progress: Progress | None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        """Decode the dataset. `limit` (the first images of each class to train on) and `splits` (the others come
        back empty) are honoured where `decodes_part` says so."""
        raise NotImplementedError
