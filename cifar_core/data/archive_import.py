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
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import re
import stat
import struct
import tarfile
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cifar_core.base.errors import StudioError
from cifar_core.data.image_limits import MAX_FILE_BYTES

# A bigger dataset than CIFAR-10 (60,000 images, the studio's reference) fits, with room to spare; 100,000 tiny
# files or more are refused before any is read: they would cost minutes and 100,000 files on disk for nothing.
MAX_MEMBERS = 100_000
# One image file: the same limit as uploads and training data (image_limits), so nothing accepted here is refused later.
MAX_MEMBER_BYTES = MAX_FILE_BYTES
# All members together, as declared: a decompression bomb declares far more (42.zip: 4.5 PB) and is refused
# from its headers; 4 GiB is about 70 times CIFAR-10 as PNG files, more than this CPU studio trains on.
MAX_TOTAL_BYTES = 4 * 2**30
# A pax or GNU long-name header of a tar (a member's long path and attributes) is a few hundred bytes. Python
# 3.11.7's tarfile reads one whole and parses it in quadratic time (CVE-2024-6232; measured here: 0.33 s at
# 16 KiB, 4.2 s at 64 KiB), so a larger one is refused before tarfile sees it.
MAX_META_BYTES = 16 * 2**10

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".tbz2", ".xz", ".txz", ".7z", ".rar", ".zst", ".lz", ".lzma")
SYSTEM_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}

# Why a member was skipped, in words; the keys are what import reports count.
CLASS_ORDER_FILE = "classes.txt"  # one class name per line: the order the imported dataset keeps
MAX_CLASS_ORDER_BYTES = 64 * 1024
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
        raise ArchiveError(f"{str(source)!r} does not exist (give a .zip, a .tar or .tar.gz, or a folder of class folders).")
    if zipfile.is_zipfile(source):
        return "zip"
    if _is_tar(source):
        return "tar"
    raise ArchiveError(f"{source.name!r} is not a .zip, a .tar (.gz, .bz2, .xz) or a folder.")


def images(source: Path, limits: Limits, skipped: Counter, examples: dict[str, list[str]]) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """(number of images to read, iterator of (name inside the source, file bytes)) for `source`.

    The first pass runs here, so ArchiveError comes before anything is read. Skipped
    members are counted in `skipped` by SKIP_REASONS key, with up to 5 names each in `examples`.
    """
    kind = source_kind(source)
    # zipfile reads the whole central directory and tarfile a whole pax header into memory: both are
    # bounded from the raw bytes first.
    if kind == "zip" and _zip_declared_members(source) > limits.members:
        _too_many(source, limits)
    if kind == "tar":
        _tar_prescan(source, limits)
    listing = {"zip": _zip_members, "tar": _tar_members, "folder": _folder_members}[kind]
    accepted: list[int] = []
    total = 0
    for index, member in enumerate(listing(source)):
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
    reader = {"zip": _zip_read, "tar": _tar_read, "folder": _folder_read}[kind]
    return len(accepted), _readable(reader(source, accepted, limits.member_bytes), skipped, examples)


def _too_many(source: Path, limits: Limits) -> None:
    raise ArchiveError(f"{source.name} holds more than {limits.members:,} files and folders; the limit is "
                       f"{limits.members:,}. Import a smaller dataset, or split it into several.")


def _too_big(source: Path, limits: Limits) -> None:
    raise ArchiveError(f"{source.name} declares more than {limits.total_bytes / 2**30:g} GiB of files once unpacked "
                       "(a decompression bomb, or a dataset too large to import); nothing was imported.")


def _readable(items: Iterator[tuple[str, bytes | None]], skipped: Counter, examples: dict[str, list[str]]) -> Iterator[tuple[str, bytes]]:
    """The members that could be read; the others counted as unreadable images."""
    for name, data in items:
        if data is None:
            skipped["unreadable_images"] += 1
            if len(examples.setdefault("unreadable_images", [])) < 5:
                examples["unreadable_images"].append(name)
        else:
            yield name, data


def _check_path(name: str, source: str) -> None:
    """ArchiveError for a member path that is absolute or climbs out of the archive. Backslashes count as
    separators too (Windows tools write them) so that `..\\x` is caught as well."""
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise ArchiveError(f"{source} holds an absolute path ({name!r}): it is refused as a whole, nothing was imported. "
                           "Make the archive from inside the dataset folder (e.g. `zip -r data.zip train test`).")
    if ".." in parts:
        raise ArchiveError(f"{source} holds a path that leads outside it ({name!r}): it is refused as a whole, nothing was "
                           "imported. Make the archive from inside the dataset folder.")


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


def _zip_declared_members(source: Path) -> int:
    """The member count a zip's end record declares (the zip64 record's when the classic field is full);
    0 when there is none (zipfile then reports the file as damaged)."""
    with open(source, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 22 - 0xFFFF))  # the end record: 22 bytes and a comment of up to 64 KiB
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return 0
        count = struct.unpack_from("<H", tail, at + 10)[0]
        if count == 0xFFFF and at >= 20 and tail[at - 20:at - 16] == b"PK\x06\x07":  # the zip64 locator
            f.seek(struct.unpack_from("<Q", tail, at - 12)[0])
            record = f.read(40)
            if record[:4] == b"PK\x06\x06" and len(record) == 40:
                count = struct.unpack_from("<Q", record, 32)[0]
        return count


def _zip_members(source: Path) -> Iterator[Member]:
    with zipfile.ZipFile(source) as zf:
        for info in zf.infolist():
            yield Member(info.filename, _zip_kind(info), info.file_size)


def _zip_read(source: Path, accepted: list[int], max_bytes: int) -> Iterator[tuple[str, bytes | None]]:
    with zipfile.ZipFile(source) as zf:
        infos = zf.infolist()
        for index in accepted:
            info = infos[index]
            try:
                with zf.open(info) as f:
                    # zipfile stops at the declared size and checks the CRC, so a member cannot unpack to more.
                    data = f.read(max_bytes + 1)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, ValueError):
                data = None  # damaged, encrypted, or an unsupported compression method
            yield info.filename, data if data is not None and len(data) <= max_bytes else None


# ---------------------------------------------------------------- tar


def _tar_kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym() or info.islnk():
        return "link"
    return "file" if info.isfile() else "special"


def _tar_prescan(source: Path, limits: Limits) -> None:
    """The member count and declared sizes from a tar's raw 512-byte headers, data skipped in chunks, before
    tarfile reads anything: tarfile reads a pax or GNU long-name header whole into memory, so one declaring
    gigabytes must be refused here. A stream that cannot be decompressed is refused as damaged."""
    try:
        with _decompressed(source) as f:
            _tar_headers(f, source, limits)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise ArchiveError(f"{source.name} is damaged or cut short ({err}); nothing was imported.") from err


def _decompressed(source: Path):
    """`source` opened for reading, through gzip, bz2 or xz when its first bytes say so."""
    with open(source, "rb") as f:
        magic = f.read(6)
    opener = gzip.open if magic[:2] == b"\x1f\x8b" else bz2.open if magic[:3] == b"BZh" else lzma.open if magic == b"\xfd7zXZ\x00" else open
    return opener(source, "rb")


def _is_tar(source: Path) -> bool:
    """Whether `source` (maybe compressed) starts with a tar header whose checksum is right. Checked here, not
    with tarfile.is_tarfile, which parses the first member's pax header before _tar_prescan has bounded it."""
    try:
        with _decompressed(source) as f:
            header = f.read(512)
    except (OSError, EOFError, lzma.LZMAError):
        return False
    if len(header) < 512 or header == bytes(512):
        return False
    # The checksum is the sum of the header's bytes with its own 8-byte field counted as spaces.
    # Unsigned, as POSIX says, or signed, as some old tars wrote it (tarfile accepts both too).
    rest = header[:148] + b" " * 8 + header[156:]
    return _tar_number(header[148:156]) in (sum(rest), sum(struct.unpack("512b", rest)))


def _tar_headers(f, source: Path, limits: Limits) -> None:
    members = total = 0
    while len(header := f.read(512)) == 512 and header != bytes(512):
        size = _tar_number(header[124:136])
        if header[156:157] in (b"x", b"g", b"L", b"K"):  # pax and GNU long-name metadata of the next member
            if size > MAX_META_BYTES:
                raise ArchiveError(f"{source.name} holds a header of {size:,} bytes (a real one has a few hundred): "
                                   "it is refused as a whole, nothing was imported.")
        else:
            members += 1
            total += size
            if members > limits.members:
                _too_many(source, limits)
            if total > limits.total_bytes:
                _too_big(source, limits)
        left = -(-size // 512) * 512
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            left -= len(chunk)


def _tar_number(field: bytes) -> int:
    """A tar header's number: octal text, or base-256 when the first byte's high bit is set (GNU, for big sizes)."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        return 0  # not a number: tarfile reports the header as damaged


def _tar_members(source: Path) -> Iterator[Member]:
    # A stream ("r|*"): headers in order, each member's data skipped, never the random access that would
    # decompress a .tar.gz again for every member.
    try:
        with tarfile.open(source, mode="r|*") as tf:
            for info in tf:
                yield Member(info.name, _tar_kind(info), info.size if info.isfile() else 0)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ArchiveError(f"{source.name} is damaged or cut short ({err}); nothing was imported.") from err


def _tar_read(source: Path, accepted: list[int], max_bytes: int) -> Iterator[tuple[str, bytes | None]]:
    wanted = iter(accepted)
    next_index = next(wanted, None)
    try:
        with tarfile.open(source, mode="r|*") as tf:
            for index, info in enumerate(tf):
                if next_index is None:
                    return
                if index != next_index:
                    continue
                next_index = next(wanted, None)
                f = tf.extractfile(info)
                data = f.read(max_bytes + 1) if f is not None else None
                yield info.name, data if data is not None and len(data) <= max_bytes else None
    except (tarfile.TarError, EOFError, OSError) as err:
        raise ArchiveError(f"{source.name} is damaged or cut short ({err}); nothing was imported.") from err


# ---------------------------------------------------------------- folder


def _folder_members(source: Path) -> Iterator[Member]:
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
    raise ArchiveError(f"cannot read the folder {err.filename}: {err.strerror or err}")


def _folder_read(source: Path, accepted: list[int], max_bytes: int) -> Iterator[tuple[str, bytes | None]]:
    members = list(_folder_members(source))
    for index in accepted:
        name = members[index].name
        try:
            # O_NOFOLLOW: a file swapped for a link since the listing is not followed.
            with open(source / name, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as f:
                data = f.read(max_bytes + 1)
        except OSError:
            data = None
        yield name, data if data is not None and len(data) <= max_bytes else None

