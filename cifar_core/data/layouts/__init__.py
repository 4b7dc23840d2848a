"""The dataset layouts a data folder can hold, and which one a folder holds.

A new layout is one module with a `Layout` (layouts/base.py) and one entry in LAYOUTS; the loader, the health
report, the pages and the accepted-layouts message (LAYOUT_HELP) all read this list. Keras' download
(keras_download.py) is the source when no folder is given, so it is no entry here.
"""

from __future__ import annotations

from pathlib import Path

from cifar_core.data.images import DataError
from cifar_core.data.layouts import batches, folders, kaggle
from cifar_core.data.layouts.base import Layout
from cifar_core.data.locate import resolve_data_dir

# From the most general to the most specific: the help lists them in this order, and a folder is read as the
# last one that matches (python batches or a labels file beside train/<class>/ folders are what the folder is for).
LAYOUTS: tuple[Layout, ...] = (folders.LAYOUT, kaggle.LAYOUT, batches.LAYOUT)

LAYOUT_HELP = (
    "Accepted CIFAR-10 layouts:\n"
    + "".join(f"  {number}. {layout.help}\n" for number, layout in enumerate(LAYOUTS, start=1))
    + "Point at one with --data-dir DIR or the CIFAR10_DIR environment variable."
)


def detect_layout(root: Path) -> tuple[Layout, Path]:
    """(layout, folder) of a data folder (or an imported dataset's name), or DataError with the accepted layouts."""
    root = Path(resolve_data_dir(str(root)))
    if not root.is_dir():
        raise DataError(f"Data folder {str(root)!r} does not exist.\n{LAYOUT_HELP}")
    for layout in reversed(LAYOUTS):
        if (folder := layout.detect(root)) is not None:
            return layout, folder
    raise DataError(f"No CIFAR-10 data recognised in {str(root)!r}.\n{LAYOUT_HELP}")
