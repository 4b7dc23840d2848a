"""Reading a .tar (.gz, .bz2, .xz) for archive_import, with every header checked before tarfile reads it.

The stream is unpacked through bounded_io (what comes out counted and capped, an LZMA dictionary over
64 MiB refused first). The raw 512-byte headers are read first, each one's checksum checked, up to the end
marker: tarfile itself reads a pax or GNU long-name header whole (and parses it in quadratic time), and
takes a damaged or missing header for the end of the archive, so a tar cut inside a header would read as a
shorter one. Then tarfile lists the members, and must list as many as the headers counted. Problems are
raised as bounded_io's Damaged and TooLarge, whose phrases archive_import puts after the file's name.
"""

from __future__ import annotations

import contextlib
import struct
import tarfile
from pathlib import Path
from typing import Iterator

from cifar_core.base.bounded_io import Damaged, TooLarge, open_unpacked
from cifar_core.base.bounded_zip import said

# A pax or GNU long-name header of a tar (a member's long path and attributes) is a few hundred bytes. Python
# 3.11.7's tarfile reads one whole and parses it in quadratic time (CVE-2024-6232; measured here: 0.33 s at
# 16 KiB, 4.2 s at 64 KiB), so a larger one is refused before tarfile sees it.
MAX_META_BYTES = 16 * 2**10
# A tar stream may unpack to the declared total plus this much per member: its 512-byte header, padding to
# 512 bytes, and a pax or long-name header of a few hundred bytes.
TAR_OVERHEAD_BYTES = 4 * 2**10
# What is read after the end marker: GNU tar pads the last record to 10 KiB, 128 KiB at its largest common
# blocking factor; whatever follows is ignored, as tarfile ignores it.
TRAILER_BYTES = 1 << 20
CUT_SHORT = "is damaged or cut short (it ends inside its list of files)"

Entry = tuple[str, str, int]  # a member's name, kind ("file", "dir", "link", "special") and declared size


def is_tar(source: Path) -> bool:
    """Whether `source` (maybe compressed) starts with a tar header whose checksum is right. Checked here, not
    with tarfile.is_tarfile, which parses the first member's pax header before `prescan` has bounded it.
    Damaged for a compressed stream that is damaged or cut short; TooLarge for one that needs too much memory
    to unpack (an LZMA dictionary over 64 MiB)."""
    try:
        with open_unpacked(source, 1 << 20, "") as f:
            header = f.read(512)
    except OSError:
        return False
    return len(header) == 512 and _checksum_ok(header)


def prescan(source: Path, members: int, total_bytes: int) -> int:
    """The number of members, from the raw headers up to the end marker (a zero block), then up to
    TRAILER_BYTES of what follows (tar pads its last record with zeros; a compressed stream cut short there
    is refused; anything further is never read). TooLarge past `members` members, `total_bytes` declared
    bytes or a metadata header over MAX_META_BYTES; Damaged for a header cut short or damaged, member data
    cut short, or no end marker."""
    with _stream(source, members, total_bytes) as f:
        count = _headers(f, members, total_bytes)
        f.read(TRAILER_BYTES)
    return count


def _stream(source: Path, members: int, total_bytes: int):
    cap = total_bytes + members * TAR_OVERHEAD_BYTES + (1 << 20)
    return open_unpacked(source, cap, f"unpacks to more than {cap / 2**30:,.2f} GiB (a decompression bomb, or a "
                                      "dataset too large to import)")


def _headers(f, max_members: int, total_bytes: int) -> int:
    members = total = 0
    while (header := f.read(512)) != bytes(512):
        if len(header) < 512 or not _checksum_ok(header):
            where = "has a damaged header" if len(header) == 512 else "ends with no end marker"
            raise Damaged(f"is damaged or cut short (it {where} after {_files(members)})")
        size = _number(header[124:136])
        if header[156:157] in (b"x", b"g", b"L", b"K"):  # pax and GNU long-name metadata of the next member
            if size > MAX_META_BYTES:
                raise TooLarge(f"holds a header of {size:,} bytes (a real one has a few hundred): it is refused as a whole")
        else:
            members += 1
            total += size
            if members > max_members:
                raise TooLarge(f"holds more than {max_members:,} files and folders; the limit is {max_members:,}. "
                               "Import a smaller dataset, or split it into several")
            if total > total_bytes:
                raise TooLarge(f"declares more than {total_bytes / 2**30:g} GiB of files once unpacked (a "
                               "decompression bomb, or a dataset too large to import)")
        left = -(-size // 512) * 512
        while left > 0 and (chunk := f.read(min(left, 1 << 20))):
            left -= len(chunk)
        if left > 0:
            raise Damaged(f"is damaged or cut short (it ends inside a file, after {_files(members - 1)})")
    return members


def _files(n: int) -> str:
    return f"{n:,} file" + ("" if n == 1 else "s")


def _checksum_ok(header: bytes) -> bool:
    """Whether a 512-byte tar header's checksum is right: the sum of its bytes with its own 8-byte field
    counted as spaces, unsigned as POSIX says, or signed as some old tars wrote it (tarfile accepts both too)."""
    if header == bytes(512):
        return False
    rest = header[:148] + b" " * 8 + header[156:]
    return _number(header[148:156]) in (sum(rest), sum(struct.unpack("512b", rest)))


def _number(field: bytes) -> int:
    """A tar header's number: octal text, or base-256 when the first byte's high bit is set (GNU, for big sizes)."""
    if field[:1] and field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.strip(b"\0 ") or b"0", 8)
    except ValueError:
        return -1  # not a number: no checksum matches it


@contextlib.contextmanager
def _open(source: Path, members: int, total_bytes: int) -> Iterator[tarfile.TarFile]:
    """tarfile reading `source` as a stream ("r|": headers in order, each member's data skipped, never the
    random access that would unpack a .tar.gz again for every member), unpacked through bounded_io."""
    try:
        with _stream(source, members, total_bytes) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
            yield tf
    except (tarfile.TarError, EOFError, OSError) as err:
        raise Damaged(f"is damaged or cut short ({said(err)})") from None


def _kind(info: tarfile.TarInfo) -> str:
    if info.isdir():
        return "dir"
    if info.issym() or info.islnk():
        return "link"
    return "file" if info.isfile() else "special"


def entries(source: Path, members: int, total_bytes: int) -> Iterator[Entry]:
    """Each member's (name, kind, declared size), in order."""
    with _open(source, members, total_bytes) as tf:
        for info in tf:
            yield info.name, _kind(info), info.size if info.isfile() else 0


def read(source: Path, accepted: list[int], members: int, total_bytes: int, member_bytes: int) -> Iterator[tuple[str, bytes | None]]:
    """(name, bytes) of the members at the indices `accepted` (sorted), None for one over `member_bytes`."""
    wanted = iter(accepted)
    next_index = next(wanted, None)
    with _open(source, members, total_bytes) as tf:
        for index, info in enumerate(tf):
            if next_index is None:
                return
            if index != next_index:
                continue
            next_index = next(wanted, None)
            f = tf.extractfile(info)
            data = f.read(member_bytes + 1) if f is not None else None
            yield info.name, data if data is not None and len(data) <= member_bytes else None
    if next_index is not None:  # tarfile ended before the members its listing saw (the file changed since)
        raise Damaged(CUT_SHORT)
