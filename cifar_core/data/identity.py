"""A dataset's identity: which files, with which contents, a model learned from.

The fingerprint is a SHA-256 over every regular, non-hidden file under the data folder: its path relative
to the folder and the SHA-256 of its bytes. Renaming or copying the folder keeps it; changing, adding or
removing an image changes it. Hashing CIFAR-10's 60,000 files takes a few seconds, so the result is cached
under the cache folder, keyed by a cheap signature of the listing (paths, sizes, modification times).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from cifar_core.base import bounded_json, paths
from cifar_core.base.atomic_io import atomic_write_text

KERAS_DOWNLOAD = "keras:cifar10"  # the fingerprint of Keras' CIFAR-10 download: always the same files
CHUNK = 1 << 20


def _files(folder: Path) -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of every regular non-hidden file under `folder`, sorted; links are not followed."""
    out = []
    for dirpath, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(dirpath, name)
            st = path.lstat()
            if path.is_file() and not path.is_symlink():
                out.append((path.relative_to(folder).as_posix(), st))
    return sorted(out, key=lambda item: item[0])


def _content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(data_dir: str | Path | None, cache_dir: Path | None = None) -> str:
    """The fingerprint of the dataset in `data_dir` (None: Keras' download), computed once per listing."""
    if data_dir is None:
        return KERAS_DOWNLOAD
    folder = Path(data_dir)
    listing = _files(folder)
    signature = hashlib.sha256(json.dumps([(rel, st.st_size, st.st_mtime_ns) for rel, st in listing]).encode()).hexdigest()
    cached = Path(cache_dir or paths.cache_dir()) / "fingerprints" / f"{signature[:32]}.json"
    try:
        return str(bounded_json.read(cached, max_bytes=4096)["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not computed yet for this listing, or a damaged cache file: compute it again
    digest = hashlib.sha256()
    for rel, _ in listing:
        digest.update(f"{rel}\0{_content_hash(folder / rel)}\n".encode("utf-8", "surrogateescape"))
    value = "sha256:" + digest.hexdigest()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps({"fingerprint": value, "folder": str(folder)}))
    except OSError:
        pass  # a read-only or full cache folder: the fingerprint is still right, just computed again next time
    return value
