"""Reading a user's images out of a .zip, a .tar (.gz, .bz2, .xz) or a folder, treating it as hostile until checked.

Two passes over the source. The first reads only names, kinds and declared
sizes (a zip's central directory, a tar's headers, a folder's listing) and
refuses the whole source, before anything is decoded or written, when it holds
a path that leads outside it (`../x`, `/abs`), more members than MAX_MEMBERS or
more declared bytes than MAX_TOTAL_BYTES. Members that are merely unusable are
skipped and counted by reason (SKIP_REASONS): links, devices and pipes, hidden
and system files, archives inside the archive (never opened), non-images, files
over MAX_MEMBER_BYTES. The second pass reads the accepted members one at a time,
at most MAX_MEMBER_BYTES each, and yields their bytes; nothing is extracted, so
no name from the source is ever used as a path on disk.

Everything compressed is unpacked through cifar_core/base/bounded_io.py: what
comes out is counted and stops at the member's declared size (a zip member) or
at the archive's cap (a tar's whole stream), whatever the headers claim, and an
LZMA dictionary over 64 MiB is refused before anything is unpacked. A zip's
directory is counted entry by entry before zipfile reads it (bounded_zip). A
tar's raw headers are read first, each checked, up to its end marker: a tar cut
anywhere is refused, never read as a shorter one. A member name that is not
UTF-8 text refuses the whole source.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cifar_core.base.bounded_io import Damaged, UnpackError
from cifar_core.base.bounded_zip import open_zip, read_member
from cifar_core.base.errors import StudioError, is_text, shown
from cifar_core.data import archive_tar
from cifar_core.data.census import CLASS_ORDER_FILE, MAX_CLASS_ORDER_BYTES
from cifar_core.data.image_limits import MAX_FILE_BYTES

# A bigger dataset than CIFAR-10 (60,000 images, the studio's reference) fits, with room to spare; 100,000 tiny
# files or more are refused before any is read: they would cost minutes and 100,000 files on disk for nothing.
MAX_MEMBERS = 100_000
# One image file: the same limit as uploads and training data (image_limits), so nothing accepted here is refused later.
MAX_MEMBER_BYTES = MAX_FILE_BYTES
# All members together, as declared: a decompression bomb declares far more (42.zip: 4.5 PB) and is refused
# from its headers; 4 GiB is about 70 times CIFAR-10 as PNG files, more than this CPU studio trains on.
MAX_TOTAL_BYTES = 4 * 2**30

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst", ".lz", ".lzma")
SYSTEM_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}

# Why a member was skipped, in words; the keys are what import reports count.
SKIP_REASONS = {
    "links": "links (symbolic or hard): never followed",
    "special_files": "devices, pipes or sockets",
    "hidden_files": "hidden or system files (.DS_Store, __MACOSX/, ...)",
    "nested_archives": "archives inside the archive: not opened",
    "not_images": "files that are not images (by their name's ending)",
    "too_large": f"files over {MAX_MEMBER_BYTES // 2**20} MB",
    "unreadable_images": "images that could not be decoded",
    "outside_class_folders": "images not in a class folder (<class>/image or train|test/<class>/image)",
}


class ArchiveError(StudioError, ValueError):
    """The source is refused as a whole; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """The import's limits; tests lower them to stay fast."""

    members: int = MAX_MEMBERS
    member_bytes: int = MAX_MEMBER_BYTES
    total_bytes: int = MAX_TOTAL_BYTES


@dataclass(frozen=True)
class Member:
    name: str  # its path inside the source, '/'-separated
    kind: str  # "file", "dir", "link" or "special"
    size: int  # declared bytes


def source_kind(source: Path) -> str:
    """"folder", "zip" or "tar"; ArchiveError for anything else."""
    if source.is_dir():
        return "folder"
    if not source.is_file():
        raise ArchiveError(f"{shown(source)!r} does not exist (give a .zip, a .tar or .tar.gz, or a folder of class folders).")
    if zipfile.is_zipfile(source):
        return "zip"
    with refusing(source):
        if archive_tar.is_tar(source):
            return "tar"
    raise ArchiveError(f"{shown(source.name)!r} is not a .zip, a .tar (.gz, .bz2, .xz) or a folder.")


def images(source: Path, limits: Limits, skipped: Counter, examples: dict[str, list[str]]) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """(number of images to read, iterator of (name inside the source, file bytes)) for `source`.

    The first pass runs here, so ArchiveError comes before anything is read. Skipped
    members are counted in `skipped` by SKIP_REASONS key, with up to 5 names each in `examples`.
    """
    kind = source_kind(source)
    expected = None
    if kind == "tar":  # its raw headers are checked before tarfile reads them
        with refusing(source):
            expected = archive_tar.prescan(source, limits.members, limits.total_bytes)
    listing = {"zip": _zip_members, "tar": _tar_members, "folder": _folder_members}[kind]
    accepted: list[int] = []
    total = listed = 0
    with refusing(source):
        for index, member in enumerate(listing(source, limits)):
            listed += 1
            if index >= limits.members:
                _too_many(source, limits)
            _check_path(member.name, source.name)
            total += member.size
            if total > limits.total_bytes:
                _too_big(source, limits)
            if (reason := _skip_reason(member, limits)) is not None:
                if reason:
                    skipped[reason] += 1
                    if len(examples.setdefault(reason, [])) < 5:
                        examples[reason].append(member.name)
                continue
            accepted.append(index)
    if expected is not None and listed != expected:
        raise ArchiveError(f"{shown(source.name)} {archive_tar.CUT_SHORT}; nothing was imported.")
    reader = {"zip": _zip_read, "tar": _tar_read, "folder": _folder_read}[kind]
    return len(accepted), _readable(source, reader(source, accepted, limits), skipped, examples)


@contextlib.contextmanager
def refusing(source: Path) -> Iterator[None]:
    """Report what bounded_io and bounded_zip refuse (damaged, cut short, unpacking to too much) as ArchiveError."""
    try:
        yield
    except UnpackError as err:
        raise ArchiveError(f"{shown(source.name)} {err}; nothing was imported.") from None


def _too_many(source: Path, limits: Limits) -> None:
    raise ArchiveError(f"{shown(source.name)} holds more than {limits.members:,} files and folders; the limit is "
                       f"{limits.members:,}. Import a smaller dataset, or split it into several.")


def _too_big(source: Path, limits: Limits) -> None:
    raise ArchiveError(f"{shown(source.name)} declares more than {limits.total_bytes / 2**30:g} GiB of files once unpacked "
                       "(a decompression bomb, or a dataset too large to import); nothing was imported.")


def _readable(source: Path, items: Iterator[tuple[str, bytes | None]], skipped: Counter,
              examples: dict[str, list[str]]) -> Iterator[tuple[str, bytes]]:
    """The members that could be read; the others counted as unreadable images."""
    with refusing(source):
        yield from _read_or_count(items, skipped, examples)


def _read_or_count(items: Iterator[tuple[str, bytes | None]], skipped: Counter, examples: dict[str, list[str]]) -> Iterator[tuple[str, bytes]]:
    for name, data in items:
        if data is None:
            skipped["unreadable_images"] += 1
            if len(examples.setdefault("unreadable_images", [])) < 5:
                examples["unreadable_images"].append(name)
        else:
            yield name, data


def _check_path(name: str, source: str) -> None:
    """ArchiveError for a member path that is absolute, climbs out of the archive, or is not UTF-8 text (its
    folders would become class names). Backslashes count as separators too (Windows tools write them) so that
    `..\\x` is caught as well."""
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"{shown(source)} holds an absolute path ({shown(name)!r}): it is refused as a whole, nothing was "
                           "imported. Make the archive from inside the dataset folder (e.g. `zip -r data.zip train test`).")
    if ".." in parts:
        raise ArchiveError(f"{shown(source)} holds a path that leads outside it ({shown(name)!r}): it is refused as a whole, "
                           "nothing was imported. Make the archive from inside the dataset folder.")
    if not is_text(name):
        raise ArchiveError(f"{shown(source)} holds a file name that is not UTF-8 text ('{shown(name)}'): it is refused as a "
                           "whole, nothing was imported. Rename it (e.g. caf\\xe9 to café) and make the archive again.")


def _skip_reason(member: Member, limits: Limits) -> str | None:
    """Why a member is not read ("" for folders, which are not counted), or None for an image to read."""
    if member.kind == "dir":
        return ""
    if member.kind == "link":
        return "links"
    if member.kind == "special":
        return "special_files"
    parts = split_name(member.name)
    if any(p.startswith(".") or p in SYSTEM_NAMES for p in parts):
        return "hidden_files"
    lowered = parts[-1].lower() if parts else ""
    if lowered.endswith(ARCHIVE_SUFFIXES):
        return "nested_archives"
    if lowered == CLASS_ORDER_FILE and len(parts) <= 2 and member.size <= MAX_CLASS_ORDER_BYTES:
        return None  # the dataset's own class order (at the top, or inside one wrapping folder): read, never decoded
    if not lowered.endswith(IMAGE_SUFFIXES):
        return "not_images"
    if member.size > limits.member_bytes:
        return "too_large"
    return None


def split_name(name: str) -> tuple[str, ...]:
    """A member's path as its parts, without empty and '.' parts."""
    return tuple(p for p in re.split(r"[\\/]", name) if p not in ("", "."))


# ---------------------------------------------------------------- zip


def _zip_kind(info: zipfile.ZipInfo) -> str:
    # Unix archivers keep the file type in the high 16 bits; 0 there means a plain file from another system.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if info.is_dir() or file_type == stat.S_IFDIR:
        return "dir"
    if file_type == stat.S_IFLNK:
        return "link"
    return "file" if file_type in (0, stat.S_IFREG) else "special"


def _zip_members(source: Path, limits: Limits) -> Iterator[Member]:
    with open_zip(source, limits.members) as zf:
        for info in zf.infolist():
            yield Member(info.filename, _zip_kind(info), info.file_size)


def _zip_read(source: Path, accepted: list[int], limits: Limits) -> Iterator[tuple[str, bytes | None]]:
    # Each member is unpacked up to the size it declares (under limits.member_bytes, or it was skipped) and
    # not a byte more (TooLarge refuses the archive); the declared sizes add up to at most limits.total_bytes.
    with open_zip(source, limits.members) as zf, open(source, "rb") as f:
        infos = zf.infolist()
        for index in accepted:
            info = infos[index]
            try:
                data = read_member(f, info)
            except Damaged:
                data = None  # damaged, encrypted, or an unsupported compression method
            yield info.filename, data


def _tar_members(source: Path, limits: Limits) -> Iterator[Member]:
    return (Member(*entry) for entry in archive_tar.entries(source, limits.members, limits.total_bytes))


def _tar_read(source: Path, accepted: list[int], limits: Limits) -> Iterator[tuple[str, bytes | None]]:
    return archive_tar.read(source, accepted, limits.members, limits.total_bytes, limits.member_bytes)


# ---------------------------------------------------------------- folder


def _folder_members(source: Path, limits: Limits | None = None) -> Iterator[Member]:
    # os.walk lists a linked folder among the folders but, without followlinks, never enters it.
    for top, dirs, files in os.walk(source, onerror=_raise):
        dirs.sort()
        rel = Path(top).relative_to(source)
        for name in dirs + sorted(files):
            path = Path(top) / name
            info = os.lstat(path)
            kind = ("link" if stat.S_ISLNK(info.st_mode) else "dir" if stat.S_ISDIR(info.st_mode)
                    else "file" if stat.S_ISREG(info.st_mode) else "special")
            yield Member((rel / name).as_posix(), kind, info.st_size if kind == "file" else 0)


def _raise(err: OSError) -> None:
    raise ArchiveError(f"cannot read the folder {shown(err.filename)}: {err.strerror or err}")


def _folder_read(source: Path, accepted: list[int], limits: Limits) -> Iterator[tuple[str, bytes | None]]:
    members = list(_folder_members(source))
    for index in accepted:
        name = members[index].name
        try:
            # O_NOFOLLOW: a file swapped for a link since the listing is not followed.
            with open(source / name, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as f:
                data = f.read(limits.member_bytes + 1)
        except OSError:
            data = None
        yield name, data if data is not None and len(data) <= limits.member_bytes else None

