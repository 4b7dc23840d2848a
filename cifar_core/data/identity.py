"""A dataset's identity: which files, with which contents, a model learned from, and the record a model keeps of it.

The fingerprint is a SHA-256 over every regular, non-hidden file under the data folder: its path relative
to the folder and the SHA-256 of its bytes (an imported dataset's own `dataset.json` is left out: it names
the dataset and where it was imported, not its images). Renaming or copying the folder keeps it; changing,
adding or removing an image changes it. Hashing CIFAR-10's 60,000 files takes seconds, so the result is
cached under the cache folder, keyed by a cheap signature of the listing (paths, sizes, modification times).

Every run and every published model keeps a DatasetRecord beside model.keras (`dataset_record.json`): the
dataset's name, the model's classes in output order, and the fingerprint. A model saved before records gets
one inferred from its classes.json and config.json, with the fingerprint unknown. `fit` says how a model's
record fits a dataset's: the same dataset, a copy of it (the same class names in the same order), some of
its classes, or another dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_core.base import bounded_json, paths
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.base.errors import StudioError
from cifar_core.data.classes import MAX_NAME_CHARS, ClassesError, class_names_problem, model_class_names
from cifar_core.data.census import DATASET_FILE
from cifar_core.data.locate import resolve_data_dir

KERAS_DOWNLOAD = "keras:cifar10"  # the fingerprint of Keras' CIFAR-10 download: always the same files
KERAS_NAME = "Keras' CIFAR-10 download"
UNKNOWN_NAME = "an unknown dataset"  # a model saved before records, without a data folder in its settings
RECORD_FILE = "dataset_record.json"
# A record holds a name and a class list: 1 MiB is classes.json's own limit, far above any real list.
MAX_RECORD_BYTES = 1 << 20
CHUNK = 1 << 20

# How a model's record fits a dataset (`fit`), best first. The first two are the dataset's own models.
SAME = "same dataset"
COPY = "same classes"  # another copy of the data (its fingerprint differs or is unknown), the same class list
PART = "some of its classes"
OTHER = "another dataset"


class RecordError(StudioError, ValueError):
    """A model's dataset record cannot be read or used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class DatasetRecord:
    """The dataset a model learned from (or the dataset in use): its name, the classes (a model's: in output
    order), and the fingerprint of its files (None: unknown, for a model saved before records)."""

    name: str
    class_names: tuple[str, ...]
    fingerprint: str | None
    inferred: bool = False  # built from a model's classes.json and config.json, not read from a record

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class_names": list(self.class_names), "fingerprint": self.fingerprint}

    def describe(self) -> str:
        """'cifar10 (10 classes)': how a message names it."""
        return f"{self.name} ({len(self.class_names)} classes)"


def fit(model: DatasetRecord, data: DatasetRecord) -> str:
    """How a model that learned `model` fits the dataset `data`: SAME (its files, every class), COPY (the same
    class names in the same order: a copy of the data), PART (its files, some of its classes) or OTHER."""
    if model.fingerprint is not None and model.fingerprint == data.fingerprint:
        if set(model.class_names) == set(data.class_names):
            return SAME
        if set(model.class_names) <= set(data.class_names):
            return PART
    if model.class_names and model.class_names == data.class_names:
        return COPY
    return OTHER


def readable(model_classes: tuple[str, ...], data: DatasetRecord) -> bool:
    """Whether the test images of `data` can be scored by a model of `model_classes`: it has each of them."""
    return bool(model_classes) and set(model_classes) <= set(data.class_names)


def dataset_name(data_dir: str | Path | None) -> str:
    """A dataset's name as the studio shows it: an imported dataset's name or the folder's own name
    ("cifar10" for ../shared/data/cifar10); Keras' download without a folder."""
    if not data_dir:
        return KERAS_NAME
    text = str(data_dir).rstrip("/\\")
    return Path(text).name or text or KERAS_NAME


def record_for(data_dir: str | None, class_names: tuple[str, ...], cache_dir: Path | None = None) -> DatasetRecord:
    """The record of a model that learned `class_names` (in its output order) from the dataset in `data_dir`."""
    return DatasetRecord(dataset_name(data_dir), tuple(class_names), fingerprint(data_dir, cache_dir))


def write_record(folder: Path, record: DatasetRecord) -> None:
    """Store `record` as `folder`/dataset_record.json (beside the model), atomically."""
    atomic_write_text(Path(folder) / RECORD_FILE, json.dumps(record.to_dict(), indent=2))


def read_record(folder: Path, config: dict[str, Any] | None = None) -> DatasetRecord:
    """The dataset record of the model in `folder`: its dataset_record.json, or, for a model saved before
    records, one inferred (classes from classes.json, CIFAR-10's without one; the name from `config`'s data
    folder; the fingerprint unknown). RecordError, naming the file, when either file cannot be used."""
    file = Path(folder) / RECORD_FILE
    if not file.exists():
        return _inferred(Path(folder), config)
    try:
        data = bounded_json.read(file, max_bytes=MAX_RECORD_BYTES)
    except (OSError, ValueError) as err:  # JSONError is a ValueError and names the file
        raise RecordError(f"{file} cannot be read: {getattr(err, 'strerror', None) or err}") from None
    if problem := _record_problem(data):
        raise RecordError(f"{file}: {problem}; it should read "
                          '{"name": "flowers", "class_names": ["daisy", "rose", ...], "fingerprint": "sha256:..."}')
    return DatasetRecord(data["name"], tuple(data["class_names"]), data["fingerprint"])


def _record_problem(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "it is not a JSON object"
    name, fingerprint_value = data.get("name"), data.get("fingerprint")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return f'"name" must be a printable text of 1 to {MAX_NAME_CHARS} characters'
    if problem := class_names_problem(data.get("class_names")):
        return f'"class_names": {problem}'
    if fingerprint_value is not None and (not isinstance(fingerprint_value, str) or len(fingerprint_value) > 200):
        return '"fingerprint" must be a text (or null when unknown)'
    return None


def _inferred(folder: Path, config: dict[str, Any] | None) -> DatasetRecord:
    try:
        classes = model_class_names(folder / "model.keras")
    except ClassesError as err:
        raise RecordError(str(err)) from None
    data_dir = (config or {}).get("data_dir")
    name = dataset_name(data_dir) if isinstance(data_dir, str) and data_dir else UNKNOWN_NAME
    return DatasetRecord(name, tuple(classes), None, inferred=True)


def stored_folder(data_dir: Any) -> str | None:
    """The data folder a model's settings name, where it is on this machine: an imported dataset's name,
    an absolute folder, or a relative one resolved against the checkout (a published model's
    `../shared/data/cifar10`), then against the working folder; None when it is nowhere here. A stored
    folder is only ever a default: a folder the user gives always wins."""
    if not isinstance(data_dir, str) or not data_dir:
        return None
    resolved = resolve_data_dir(data_dir)
    candidates = [Path(resolved)] if Path(resolved).is_absolute() else [paths.PROJECT_ROOT / resolved, Path(resolved)]
    return next((str(c.resolve()) for c in candidates if c.is_dir()), None)


def folder_signature(data_dir: str | None) -> tuple:
    """A cheap key that changes when a folder's images are added, removed or renamed: the modification
    times of the folder and of its folders two levels down (train/, train/<class>/...). Files changed in
    place keep it; `fingerprint` sees those. For caches of what is shown, not of what is recorded."""
    if not data_dir:
        return ()
    out = []
    try:
        out.append(("", os.stat(data_dir).st_mtime_ns))
        for child in _subfolders(data_dir):
            out.append((child.name, child.stat().st_mtime_ns))
            out.extend((f"{child.name}/{g.name}", g.stat().st_mtime_ns) for g in _subfolders(child.path))
    except OSError:
        return (str(data_dir), "unreadable")
    return (str(data_dir), *out)


def _subfolders(path: str) -> list[os.DirEntry]:
    # DirEntry.is_dir reads the listing's file type: no stat per file, even in a flat folder of 50,000 images.
    with os.scandir(path) as entries:
        return sorted((e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)),
                      key=lambda e: e.name)


def _files(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, modification time) of every regular non-hidden file under `folder`, sorted;
    links are not followed. One stat per file: the listing of CIFAR-10 is read in about a second."""
    out = []
    stack = [("", folder)]
    while stack:
        rel, path = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                # data import's description of the dataset (dataset.json) is not part of its identity
                if entry.name.startswith(".") or (not rel and entry.name == DATASET_FILE):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{rel}{entry.name}/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    out.append((f"{rel}{entry.name}", st.st_size, st.st_mtime_ns))
    return sorted(out)


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
    signature = hashlib.sha256(json.dumps(listing).encode("utf-8", "surrogateescape")).hexdigest()
    cached = Path(cache_dir or paths.cache_dir()) / "fingerprints" / f"{signature[:32]}.json"
    try:
        return str(bounded_json.read(cached, max_bytes=4096)["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not computed yet for this listing, or a damaged cache file: compute it again
    digest = hashlib.sha256()
    for rel, _, _ in listing:
        digest.update(f"{rel}\0{_content_hash(folder / rel)}\n".encode("utf-8", "surrogateescape"))
    value = "sha256:" + digest.hexdigest()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cached, json.dumps({"fingerprint": value, "folder": str(folder)}))
    except OSError:
        pass  # a read-only or full cache folder: the fingerprint is still right, just computed again next time
    return value
