"""A run's ending, kept where a full disk cannot lose it.

A training that fails because the disk is full cannot record its failure in the run index: SQLite needs new
space for every write. Its row would stay 'running', and the next read, finding the process gone, would call
the run "interrupted". So every run folder holds `.ending.json`, a block of spaces made when the run starts (while
there is room); a failure that the index refuses is written over it in place, which needs no new space, and
the read that later finds the process gone takes the run's status and error from it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cifar_core.base import bounded_json
from cifar_core.base.bounded_json import JSONError

FILE = ".ending.json"
SIZE = 4096  # bytes: room for an error message of 600 characters
_BLANK = b" " * SIZE


def reserve(run_dir: Path) -> None:
    """Make (or blank) the run's ending file, for a run that starts or resumes."""
    with open(Path(run_dir) / FILE, "wb") as f:
        f.write(_BLANK)


def leave(run_dir: Path, status: str, error: str | None) -> bool:
    """Write the run's ending over its reserved block, in place; False when there is no block to write over."""
    # ASCII, at most 6 bytes a character: 600 characters always fit the block.
    text = json.dumps({"status": status, "error": (error or "")[:600]}, ensure_ascii=True).encode()
    try:
        with open(Path(run_dir) / FILE, "r+b") as f:  # r+: never truncates, so no block is freed and asked for again
            if os.fstat(f.fileno()).st_size < SIZE:
                return False
            f.write(text.ljust(SIZE))
            f.flush()
            os.fsync(f.fileno())
    except OSError:
        return False
    return True


def read(run_dir: Path) -> dict[str, str] | None:
    """The ending left by `leave` ({"status", "error"}), or None when the run left none."""
    try:
        with open(Path(run_dir) / FILE, "rb") as f:
            data = f.read(SIZE + 1).strip()
    except OSError:
        return None
    if not data:
        return None
    try:
        ending = bounded_json.loads(data, what=str(Path(run_dir) / FILE), max_bytes=SIZE)
    except JSONError:
        return None
    if not isinstance(ending, dict) or not isinstance(ending.get("error"), str):
        return None
    return {"status": "stopped" if ending.get("status") == "stopped" else "failed", "error": ending["error"]}
