"""Writing files so that readers see the old file or the new one, never half of one (temp file + rename).

Every writer of the studio's files (run folders, caches, published models) uses these.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from cifar_core.base import faults
from cifar_core.base.compat import weights_h5


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half of one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_save_model(model: Any, path: Path) -> None:
    """`model.save` to a temp file in the same folder, then rename over `path`."""
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    try:
        model.save(tmp)
        faults.point("checkpoint_save")
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_save_weights(model: Any, path: Path) -> None:
    """`model.save_weights(path)`, written atomically and without HDF5 touching the disk."""
    atomic_write_bytes(path, weights_h5(model))


def atomic_save_array(path: Path, array: np.ndarray) -> None:
    """`np.save(path, array)` written atomically (no pickles)."""
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """`np.savez(path, **arrays)` written atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
