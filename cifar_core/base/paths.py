"""Where the studio keeps its files. One place, so tests can point it at a temp folder."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """`$CIFAR_ARTIFACTS` if set, else `artifacts/` in the project."""
    return Path(os.environ.get("CIFAR_ARTIFACTS") or PROJECT_ROOT / "artifacts")


def cache_dir() -> Path:
    return artifacts_dir() / "cache"


def default_model_dir() -> Path:
    """The shipped model, used when no run has completed yet (`$CIFAR_DEFAULT_MODEL_DIR` overrides it,
    so tests can stand in a folder with no model)."""
    return Path(os.environ.get("CIFAR_DEFAULT_MODEL_DIR") or PROJECT_ROOT / "artifacts" / "default")


# Names Windows refuses for a file, whatever its extension (CON.png too).
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
# Characters no file name may hold on one of Linux, macOS or Windows, control characters, and
# bidirectional-text controls (which would make the name read differently from what it is).
_UNSAFE = re.compile('[\\x00-\\x1f\\x7f<>:"/\\\\|?*\\u202a-\\u202e\\u2066-\\u2069]')
FILE_PART_BYTES = 80  # of a name's 255-byte limit: room for an index, a second part and the extension


def file_part(text: str) -> str:
    """`text` (a class name, a user's file name) as one part of a file name that is valid on Linux, macOS
    and Windows: unsafe characters become "_", leading and trailing dots and spaces go (".." is no
    folder), a reserved device name gets a "_" in front, and it is cut to FILE_PART_BYTES of UTF-8.
    Readable text (letters of any script, spaces, dashes) is kept; a changed text ends with a short hash
    of the original, so two names that differ stay different ("a/b" and "a_b")."""
    safe = _UNSAFE.sub("_", text).strip(". ")
    if safe.split(".")[0].upper() in _RESERVED:
        safe = "_" + safe
    if safe == text and len(safe.encode()) <= FILE_PART_BYTES:
        return safe
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=3).hexdigest()
    cut = safe.encode()[:FILE_PART_BYTES - len(digest) - 1].decode("utf-8", "ignore").rstrip(". ")
    return f"{cut}~{digest}"
