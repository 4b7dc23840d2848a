"""CIFAR-10's python batches: <root>/cifar-10-batches-py/{data_batch_1..5,test_batch} (or <root> itself)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.images import NATIVE_SIZE, SPLITS, DataError, ImageData, Progress
from cifar_core.data.layouts.base import Layout

BATCH_IMAGES = 10000
FOLDER = "cifar-10-batches-py"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only.

    A pickle can name any importable function to call while loading (os.system, ...);
    a CIFAR-10 batch only needs numpy's array reconstruction, so a file that asks for
    anything else is refused instead of run.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),  # written by numpy 1.x (the official files)
        ("numpy._core.multiarray", "_reconstruct"),  # written by numpy 2.x
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a CIFAR-10 batch holds only arrays, lists and dicts")
        return super().find_class(module, name)


class Batches(Layout):
    name = "batches"
    help = f"python batches: <dir>/{FOLDER}/ (data_batch_1..5, test_batch)"

    def detect(self, root: Path) -> Path | None:
        for candidate in (root / FOLDER, root):
            if (candidate / "data_batch_1").is_file() or (candidate / "test_batch").is_file():
                return candidate
        return None

    def classes(self, folder: Path) -> tuple[str, ...]:
        return CLASS_NAMES

    def counts(self, folder: Path) -> dict[str, int]:
        return {"train": BATCH_IMAGES * len(list(folder.glob("data_batch_*"))), "test": BATCH_IMAGES * (folder / "test_batch").is_file()}

    def source_files(self, folder: Path) -> list[Path]:
        return sorted(folder.glob("data_batch_*")) + sorted(folder.glob("test_batch"))

    def load(self, folder: Path, *, skip_bad: bool, progress: Progress | None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        parts = [_read(folder / f"data_batch_{i}") for i in range(1, 6)]
        x_test, y_test = _read(folder / "test_batch")
        if progress:
            progress(6, 6, "reading python batches")
        x_train = np.concatenate([p[0] for p in parts])
        y_train = np.concatenate([p[1] for p in parts])
        return ImageData(x_train, y_train, x_test, y_test, source=f"python batches at {folder}", class_names=CLASS_NAMES)


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path} is missing from the python batches folder.")
    try:
        # The official CIFAR-10 python batches are pickles, the format's only encoding;
        # _BatchUnpickler builds arrays, lists and dicts and refuses anything else.
        with open(path, "rb") as f:
            d = _BatchUnpickler(f, encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, NATIVE_SIZE, NATIVE_SIZE).transpose(0, 2, 3, 1)
        return x, np.asarray(d[b"labels"], dtype=np.int64)
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path} is not a readable CIFAR-10 python batch ({type(err).__name__}: {err}).") from err


LAYOUT = Batches()
