"""Zip archives read with bounds on memory: the central directory counted before zipfile reads it, and each
member unpacked through bounded_io, stopping at the size it declares.

zipfile reads the whole central directory into memory and makes an object per entry (2.3 GB for 4.3 million
entries behind an end record that declares a few), and unpacks a member's compressed chunk whole before it
compares with the declared size. Here the entries are counted one by one from the directory itself, and
refused past the caller's limit before zipfile sees them; members are read from their local header on,
through a CappedReader whose cap is the size they declare, and checked against their CRC.
"""

from __future__ import annotations

import bz2
import contextlib
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from cifar_core.base.bounded_io import CHUNK, CappedReader, Damaged, Inflate, TooLarge, UnpackError, lzma1_decompressor

# A directory entry is 46 bytes and its name, extra field and comment; a real one is under 300 bytes. A
# directory larger than this per allowed member is refused before it is read.
MAX_ENTRY_BYTES = 1024
_END, _END64, _END64_LOCATOR = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
_ENTRY, _LOCAL = b"PK\x01\x02", b"PK\x03\x04"
_ENCRYPTED, _UTF8 = 0x1, 0x800
# What zipfile raises for a damaged directory: bad magic numbers and offsets, a corrupt extra field, a name
# flagged UTF-8 that is not (UnicodeDecodeError is a ValueError), a short read.
_DAMAGE = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error, NotImplementedError, KeyError)


def directory_entries(path: Path, max_members: int) -> int:
    """How many entries a zip's central directory holds, counted from the entries themselves (an end
    record can understate them), reading at most CHUNK bytes at a time. TooLarge for more than
    `max_members` or a directory over `max_members` * MAX_ENTRY_BYTES; Damaged for no end record or a
    directory that is not one."""
    with open(path, "rb") as f:
        start, size, declared = _directory(f)
        if declared > max_members:
            raise TooLarge(f"holds more than {max_members:,} files and folders (its end record says {declared:,})")
        if size > max_members * MAX_ENTRY_BYTES:
            raise TooLarge(f"has a file directory of {size:,} bytes, more than {max_members:,} files need")
        f.seek(start)
        count, done, buffer = 0, 0, b""
        while done < size:
            if len(buffer) < 46:
                buffer += f.read(CHUNK)
                if len(buffer) < 46:
                    raise Damaged("is cut short (its file directory ends early)")
            if buffer[:4] != _ENTRY:
                raise Damaged("has a damaged file directory")
            n, m, k = struct.unpack_from("<HHH", buffer, 28)
            skip = 46 + n + m + k
            count, done = count + 1, done + skip
            if count > max_members:
                raise TooLarge(f"holds more than {max_members:,} files and folders")
            if skip <= len(buffer):
                buffer = buffer[skip:]
            else:
                f.seek(skip - len(buffer), os.SEEK_CUR)
                buffer = b""
    return count


def _directory(f: BinaryIO) -> tuple[int, int, int]:
    """(where the central directory starts, its size in bytes, the entries it declares), found as zipfile finds them: from the end
    record (and the zip64 one when the classic fields are full), measured back from the end record so that
    data in front of the archive (a self-extractor) is allowed."""
    f.seek(0, os.SEEK_END)
    end_at = max(0, f.tell() - 22 - 0xFFFF)  # the end record: 22 bytes and a comment of up to 64 KiB
    f.seek(end_at)
    tail = f.read()
    at = tail.rfind(_END)
    if at < 0 or at + 22 > len(tail):
        raise Damaged("is not a zip archive, or is cut short (it has no end record)")
    declared, size = struct.unpack_from("<HI", tail, at + 10)
    start = end_at + at - size
    locator = tail[at - 20:at] if at >= 20 else b""
    if locator[:4] == _END64_LOCATOR:
        record_at = struct.unpack_from("<Q", locator, 8)[0]
        f.seek(record_at)
        record = f.read(56)
        if record[:4] != _END64 or len(record) < 56:
            raise Damaged("has a damaged zip64 end record")
        declared, size = struct.unpack_from("<QQ", record, 32)
        start = end_at + at - 20 - 56 - size
    if start < 0:
        raise Damaged("has a damaged end record (its directory would start before the file)")
    return start, size, declared


@contextlib.contextmanager
def open_zip(path: Path, max_members: int) -> Iterator[zipfile.ZipFile]:
    """zipfile.ZipFile(path), after `directory_entries` bounded its directory; its damage as Damaged."""
    directory_entries(path, max_members)
    try:
        archive = zipfile.ZipFile(path)
    except _DAMAGE as err:
        raise Damaged(f"is damaged ({said(err)})") from None
    with archive:
        if any(info.header_offset < 0 for info in archive.infolist()):  # the end record's offsets do not add up
            raise Damaged("is damaged (bad offset for its file directory)")
        yield archive


def said(err: BaseException) -> str:
    """An error's text on one line, at most 160 characters (zipfile's messages can quote a whole name)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 160 else text[:159] + "…"


def member_stream(f: BinaryIO, info: zipfile.ZipInfo) -> CappedReader:
    """The unpacked bytes of the member `info` of the zip open as `f`, read from its local header on and
    capped at the size it declares (TooLarge beyond it); Damaged for a damaged header, an encrypted member
    or a compression method zipfile cannot read either."""
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) < 30 or header[:4] != _LOCAL:
        raise Damaged(f"has a damaged header for its member {info.filename!r:.80}")
    flags, name_size, extra_size = struct.unpack_from("<H", header, 6)[0], *struct.unpack_from("<HH", header, 26)
    name = f.read(name_size)
    try:
        same = name.decode("utf-8" if flags & _UTF8 else "cp437") == info.orig_filename
    except UnicodeDecodeError:
        same = False
    if not same:
        raise Damaged(f"names its member {info.filename!r:.80} differently in its directory and its header")
    if info.flag_bits & _ENCRYPTED:
        raise Damaged(f"holds {info.filename!r:.80} encrypted")
    f.seek(extra_size, os.SEEK_CUR)
    left = info.compress_size
    too_large = f"holds a member ({info.filename!r:.80}) that unpacks to more than the {info.file_size:,} bytes it declares"
    if info.compress_type == zipfile.ZIP_STORED:
        new = None
    elif info.compress_type == zipfile.ZIP_DEFLATED:
        new = lambda: Inflate(-zlib.MAX_WBITS)  # noqa: E731
    elif info.compress_type == zipfile.ZIP_BZIP2:
        new = bz2.BZ2Decompressor
    elif info.compress_type == zipfile.ZIP_LZMA:
        new, left = _lzma_header(f, info, left)
    else:
        raise Damaged(f"holds {info.filename!r:.80} compressed with method {info.compress_type}, which cannot be read")
    return CappedReader(_Slice(f, left), new, cap=info.file_size, too_large=too_large, strict_end=False)


def _lzma_header(f: BinaryIO, info: zipfile.ZipInfo, left: int):
    """(decompressor maker, compressed bytes left) after a zip LZMA member's own header: 2 bytes of version,
    2 of the properties' size, the properties. The dictionary is checked here, before anything is unpacked."""
    head = f.read(4)
    size = struct.unpack_from("<H", head, 2)[0] if len(head) == 4 else 0
    try:
        decompressor = lzma1_decompressor(f.read(size) if size == 5 else b"")
    except UnpackError as err:
        raise type(err)(f"holds a member ({info.filename!r:.80}) that {err}") from None
    return (lambda: decompressor), left - 4 - size


def read_member(f: BinaryIO, info: zipfile.ZipInfo) -> bytes:
    """The member `info` whole (the caller has bounded its declared size), checked: exactly the bytes it
    declares and their CRC."""
    with member_stream(f, info) as stream:
        data = b"".join(iter(lambda: stream.read(CHUNK), b""))
    _check(info, len(data), zlib.crc32(data))
    return data


def verify_member(f: BinaryIO, info: zipfile.ZipInfo) -> None:
    """Unpack the member `info` CHUNK by CHUNK, keeping nothing, and check its size and CRC: once this
    passed, zipfile itself can never unpack more than the member declares."""
    crc, size = 0, 0
    with member_stream(f, info) as stream:
        while chunk := stream.read(CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    _check(info, size, crc)


def verify_archive(path: Path, max_members: int) -> None:
    """Damaged or TooLarge unless the zip at `path` (an .npz, say) has at most `max_members` members and
    each unpacks to exactly what it declares: a library reading it next cannot then unpack more."""
    with open_zip(path, max_members) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            verify_member(f, info)


def _check(info: zipfile.ZipInfo, size: int, crc: int) -> None:
    if size != info.file_size:
        raise Damaged(f"holds a member ({info.filename!r:.80}) that unpacks to {size:,} bytes, not the "
                      f"{info.file_size:,} it declares: it is damaged or cut short")
    if crc != info.CRC:
        raise Damaged(f"holds a member ({info.filename!r:.80}) that fails its checksum: it is damaged")


class _Slice:
    """The next `left` bytes of `f`, and no more."""

    def __init__(self, f: BinaryIO, left: int) -> None:
        self._f, self._left = f, max(left, 0)

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._f.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        """The archive stays open: its owner closes it."""
