"""The one JSON reader: every JSON the studio reads (configs, stores, calibration.json, classes.json,
dataset.json, query params) goes through it, so a hostile file is refused in words instead of filling
memory or overflowing the parser's recursion (Python's json recurses once per nesting level)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from cifar_core.base.errors import StudioError

# Far above any file the studio writes (a run's config nests 3 deep, a history a few), far below Python's recursion limit.
MAX_DEPTH = 64
MAX_BYTES = 16 << 20
# A JSON string: the quotes and everything between them, escapes included (brackets inside strings do not nest).
# Written as "unrolled" runs of plain characters: a 15 MB string takes 0.2 s, against 4 s for one step a character.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


class JSONError(StudioError, ValueError):
    """A JSON text or file that cannot be read: its message names the file and what is wrong."""


def nesting_depth(data: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (0 for a scalar), counted without parsing."""
    codes = np.frombuffer(_STRING.sub(b"0", data), dtype=np.uint8)
    steps = np.zeros(len(codes), dtype=np.int64)
    steps[(codes == ord("[")) | (codes == ord("{"))] = 1
    steps[(codes == ord("]")) | (codes == ord("}"))] = -1
    return int(np.cumsum(steps).max(initial=0))


def loads(text: str | bytes, *, what: str = "the JSON text", max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `text`, or raise JSONError naming `what`: too large, nested too deeply, or not JSON."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if len(data) > max_bytes:
        raise JSONError(f"{what} is {len(data):,} bytes, more than the {max_bytes:,} it may have")
    # Counting the brackets first spares the scan for most texts (a run's metrics row is read thousands of times).
    if data.count(b"[") + data.count(b"{") > max_depth and nesting_depth(data) > max_depth:
        raise JSONError(f"{what} nests more than {max_depth} levels deep, which no file of the studio does")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError too
        raise JSONError(f"{what} is not valid JSON ({_first_line(err)})") from None


def read(path: str | Path, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse the JSON file at `path`, reading at most `max_bytes` + 1 bytes of it; JSONError names the file."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read(max_bytes + 1)
    return loads(data, what=str(path), max_bytes=max_bytes, max_depth=max_depth)


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__
