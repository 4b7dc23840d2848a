"""A model bundle opened safely: the `.zip` the Runs page's download and `export --format bundle` make.

A bundle is a model folder in one file (`ship/bundle.py` writes it): `model.keras` and the files that keep its
meaning beside it (class names, temperature, "none of these" threshold, dataset record, settings, model card,
preprocessing). A zip from elsewhere is hostile input until checked, so it is opened here before anything is
read: it may hold only the names a bundle holds (flat, or all in one top folder), at most MAX_MEMBERS of them,
each declared at most its cap, and each is read with that cap (a member that turns out longer than it
declared is refused). The members are unpacked once per content into the cache and loaded from there, as a
model folder is; `model.keras` itself is then checked by `safe_h5` when it loads.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from cifar_core.base.paths import cache_dir
from cifar_core.model.vgg import ModelLoadError

MODEL_FILE = "model.keras"
# The bundle's members and the most bytes each may have: a studio model is tens of MB, its other files a few KB.
MAX_MODEL_BYTES = 1 << 30
MAX_TEXT_BYTES = 1 << 20
MEMBERS = {MODEL_FILE: MAX_MODEL_BYTES, **{name: MAX_TEXT_BYTES for name in (
    "classes.json", "calibration.json", "ood.json", "dataset_record.json", "config.json", "evaluation.json",
    "preprocessing.json", "MODEL_CARD.md")}}
MAX_MEMBERS = len(MEMBERS)
CHUNK = 1 << 20


class BundleError(ModelLoadError):
    """A file given as a model bundle that is not one, or not a safe one; the message says why."""


def is_bundle_zip(ref: str | Path) -> bool:
    return str(ref).lower().endswith(".zip")


def open_bundle(path: str | Path) -> Path:
    """The folder holding a bundle's files: the zip's members unpacked under the cache (once per content; a
    later call with the same bytes reuses them). BundleError, in words, for anything that is not a bundle."""
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"The model bundle {str(path)!r} does not exist.")
    digest = _digest(path)
    folder = cache_dir() / "bundles" / digest
    if (folder / MODEL_FILE).is_file():
        return folder
    try:
        with zipfile.ZipFile(path) as archive:
            members = _checked_members(archive, path)
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = folder.with_name(f".{digest}-{secrets.token_hex(4)}")
            staging.mkdir()
            try:
                for info, name in members:
                    _copy_member(archive, info, staging / name, path)
                _move_in(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, RuntimeError) as err:
        raise BundleError(f"{str(path)!r} is not a readable zip file ({err}).") from err
    return folder


def open_bundle_bytes(data: bytes) -> Path:
    """`open_bundle` for a bundle's bytes (an upload): written to a temporary file in the cache, then opened."""
    if len(data) > MAX_MODEL_BYTES + MAX_MEMBERS * MAX_TEXT_BYTES:
        raise BundleError(f"The file is {len(data):,} bytes, more than a model bundle may have.")
    root = cache_dir() / "bundles"
    root.mkdir(parents=True, exist_ok=True)
    upload = root / f".upload-{secrets.token_hex(6)}.zip"
    try:
        upload.write_bytes(data)
        return open_bundle(upload)
    finally:
        upload.unlink(missing_ok=True)


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=12)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _checked_members(archive: zipfile.ZipFile, path: Path) -> list[tuple[zipfile.ZipInfo, str]]:
    """(member, its bundle name) for each file of the zip, or BundleError: too many members, a name a bundle
    never holds (or a path with folders, `..`, or an absolute one), a member declared larger than its cap, or
    no model.keras."""
    infos = [info for info in archive.infolist() if not info.is_dir()]
    if len(infos) > MAX_MEMBERS:
        raise BundleError(f"{str(path)!r} is not a model bundle: it holds {len(infos)} files, more than the {MAX_MEMBERS} a bundle has.")
    parts = [PurePosixPath(info.filename.replace("\\", "/")).parts for info in infos]
    # A bundle unzipped and zipped again often gains one top folder: accepted when every file is in the same one.
    tops = {p[0] for p in parts if len(p) == 2}
    strip = len(tops) == 1 and all(len(p) == 2 for p in parts)
    members = []
    for info, p in zip(infos, parts):
        name = p[-1] if strip else "/".join(p)
        if name not in MEMBERS or ".." in p or info.filename.startswith("/"):
            raise BundleError(f"{str(path)!r} is not a model bundle: it holds {info.filename!r}, which a bundle never does "
                              f"(a bundle holds {', '.join(sorted(MEMBERS))}).")
        if info.file_size > MEMBERS[name]:
            raise BundleError(f"{str(path)!r} is not a model bundle: its {name} declares {info.file_size:,} bytes, "
                              f"more than the {MEMBERS[name]:,} such a file may have.")
        members.append((info, name))
    names = [name for _, name in members]
    if len(set(names)) != len(names):
        raise BundleError(f"{str(path)!r} is not a model bundle: it holds the same file twice.")
    if MODEL_FILE not in names:
        raise BundleError(f"{str(path)!r} is not a model bundle: it holds no {MODEL_FILE}.")
    return members


def _copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, path: Path) -> None:
    """Write one member to `dest`, reading at most its cap (and its declared size): a member that is longer than
    it declared is refused, whatever its header says."""
    cap = min(MEMBERS[dest.name], info.file_size)
    written = 0
    with archive.open(info) as src, open(dest, "wb") as out:
        while block := src.read(min(CHUNK, cap + 1 - written)):
            written += len(block)
            if written > cap:
                raise BundleError(f"{str(path)!r} is not a model bundle: its {dest.name} holds more bytes than it declares.")
            out.write(block)


def _move_in(staging: Path, folder: Path) -> None:
    """Put the unpacked `staging` at `folder` in one rename; another process that unpacked the same bundle first wins."""
    try:
        os.rename(staging, folder)
    except OSError:
        if not (folder / MODEL_FILE).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(staging, folder)
