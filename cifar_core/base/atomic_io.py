"""Writing files so that readers see the old file or the new one, never half of one (temp file + rename).

Every writer of the studio's files (run folders, caches, published models) uses these. A temp file is named
after its writer's process (`.<name>.<pid>-<start>-<random>.tmp`), so that the next write of that file
removes the ones a killed writer left (a kill -9 runs no cleanup), judged by whether that process still
runs (liveness.py), never by age.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cifar_core.base import faults
from cifar_core.base.liveness import DEAD, liveness, process_start

# Temp files named before they carried their writer's process are judged by age: no write takes this long.
LEGACY_STALE_SECONDS = 24 * 3600


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half of one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_temps(path)
    me = os.getpid()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{me}-{process_start(me) or 0}-", suffix=".tmp")
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


def _remove_dead_temps(path: Path) -> None:
    """Remove the temp files of `path` that writers killed before their rename left behind."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and _dead_writer(entry, entry.name[len(prefix):-4]):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _dead_writer(entry: os.DirEntry, middle: str) -> bool:
    """Whether the writer of the temp file `entry` (`middle`: "<pid>-<start>-<random>") is dead."""
    pid, start, *_ = [*middle.split("-"), "", ""]
    if pid.isascii() and pid.isdigit() and start.isascii() and start.isdigit():
        return liveness(int(pid), None, int(start) or None) == DEAD
    return time.time() - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_SECONDS


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
    from cifar_core.base.compat import weights_h5  # Keras: imported by the writers of weights only

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
