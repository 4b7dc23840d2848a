"""Unpacking compressed bytes with a bound on what comes out, whatever the headers declare.

A header's size is a claim: a zip member of a few kilobytes that declares 973 bytes can hold a bzip2 stream
of 1.9 GiB of zeros, and Python's zipfile and tarfile hand a whole compressed chunk to the decompressor and
compare with the declared size only afterwards, once the gigabytes are in memory. Here every decompressor is
asked for at most CHUNK bytes per call (the `max_length` of zlib, bz2 and lzma), the bytes that come out are
counted, and reading stops with TooLarge as soon as they pass the cap; an LZMA stream whose dictionary is
over MAX_LZMA_DICT is refused before any of it is unpacked (liblzma allocates the dictionary first).
The callers (archive_import, safe_h5) set the caps and put the file's name in front of the message.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

from cifar_core.base.errors import StudioError

CHUNK = 1 << 16
# The largest dictionary xz's own presets use (-9: 64 MiB); a larger one only makes a stream cost more memory.
MAX_LZMA_DICT = 64 << 20
# What liblzma may allocate for one xz stream: the dictionary plus its own state (about 1 MiB). xz's next
# dictionary size after 64 MiB is 96 MiB, so this limit refuses exactly the dictionaries over MAX_LZMA_DICT.
LZMA_MEMLIMIT = MAX_LZMA_DICT + (16 << 20)

GZIP_MAGIC, BZIP2_MAGIC, XZ_MAGIC = b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"


class UnpackError(StudioError, ValueError):
    """Compressed data that cannot be read within its bounds. The message is a phrase about the file
    ("is cut short", "unpacks to more than ..."): the caller writes the file's name in front of it."""


class Damaged(UnpackError):
    """The data is damaged or cut short: it cannot be read, but it claims nothing hostile."""


class TooLarge(UnpackError):
    """The data unpacks to more than it declares or than the caps allow, or needs too much memory to unpack."""


class Decompressor(Protocol):
    eof: bool
    needs_input: bool
    unused_data: bytes

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class Inflate:
    """zlib's deflate (and gzip) decompressor with the interface of bz2's and lzma's: its input left over
    by `max_length` is kept inside and fed again, instead of being returned to the caller."""

    def __init__(self, wbits: int) -> None:
        self._zlib = zlib.decompressobj(wbits)

    @property
    def eof(self) -> bool:
        return self._zlib.eof

    @property
    def needs_input(self) -> bool:
        return not self._zlib.unconsumed_tail

    @property
    def unused_data(self) -> bytes:
        return self._zlib.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self._zlib.decompress(self._zlib.unconsumed_tail + data, max(max_length, 0))


def xz_decompressor() -> lzma.LZMADecompressor:
    """An .xz decompressor that refuses (LZMAError) a stream needing more than LZMA_MEMLIMIT to unpack."""
    return lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=LZMA_MEMLIMIT)


def lzma1_decompressor(properties: bytes) -> lzma.LZMADecompressor:
    """A raw LZMA decompressor for the 5 property bytes of a zip member's LZMA header (lc/lp/pb, then the
    dictionary size); TooLarge for a dictionary over MAX_LZMA_DICT, before anything is unpacked."""
    if len(properties) != 5 or properties[0] >= 9 * 5 * 5:
        raise Damaged("has a damaged LZMA header")
    dict_size = int.from_bytes(properties[1:], "little")
    if dict_size > MAX_LZMA_DICT:
        raise TooLarge(f"declares an LZMA dictionary of {dict_size / 2**20:,.0f} MiB (at most "
                       f"{MAX_LZMA_DICT >> 20} MiB are unpacked)")
    pb, rest = divmod(properties[0], 45)
    lp, lc = divmod(rest, 9)
    return lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1, "dict_size": dict_size,
                                                            "lc": lc, "lp": lp, "pb": pb}])


class CappedReader(io.RawIOBase):
    """The unpacked bytes of compressed data, at most CHUNK per decompressor call and `cap` in all.

    Args:
        raw: the compressed bytes (read from its current position).
        new: makes the decompressor; None for stored bytes, which pass through (and are counted too).
        cap: the most bytes it may produce; one more raises TooLarge with the phrase `too_large`.
        restart: the magic bytes of a further stream after the first one ends (gzip members, bzip2 and xz
            streams may be concatenated, zero padding between them); b"": the data ends with its first stream.
        strict_end: whether input that ends before its stream does is Damaged ("cut short"); False where the
            caller knows the compressed size and checks the unpacked size itself (a zip member).
        close_raw: close `raw` too when this reader is closed.
    """

    def __init__(self, raw: BinaryIO, new: Callable[[], Decompressor] | None, *, cap: int, too_large: str,
                 restart: bytes = b"", strict_end: bool = True, close_raw: bool = False) -> None:
        super().__init__()
        self._raw, self._new, self._cap, self._too_large = raw, new, cap, too_large
        self._restart, self._strict_end, self._close_raw = restart, strict_end, close_raw
        self._decompressor = new() if new is not None else None
        self._pending = b""
        self.produced = 0

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed and self._close_raw:
            self._raw.close()
        super().close()

    def readinto(self, buffer) -> int:
        if not len(buffer):
            return 0
        out = b""
        while not out:
            out = self._step(min(len(buffer), CHUNK))
            if out is None:
                return 0
        self.produced += len(out)
        if self.produced > self._cap:
            raise TooLarge(self._too_large)
        buffer[:len(out)] = out
        return len(out)

    def _step(self, size: int) -> bytes | None:
        """Up to `size` unpacked bytes (maybe none yet), or None at the end of the data."""
        if self._decompressor is None:
            return self._raw.read(size) or None
        if self._decompressor.eof and not self._next_stream():
            return None
        data = self._pending or (self._raw.read(CHUNK) if self._decompressor.needs_input else b"")
        self._pending = b""
        try:
            out = self._decompressor.decompress(data, size)
        except lzma.LZMAError as err:
            if "memory" in str(err).lower():  # liblzma: "Memory usage limit was reached"
                raise TooLarge(f"needs an LZMA dictionary over {MAX_LZMA_DICT >> 20} MiB to unpack") from None
            raise Damaged(f"is damaged ({err})") from None
        except (OSError, EOFError, ValueError, zlib.error) as err:
            raise Damaged(f"is damaged ({err})") from None
        if not out and not data and not self._decompressor.eof:
            if self._strict_end:
                raise Damaged("is damaged or cut short (its compressed data ends early)")
            return None
        return out

    def _next_stream(self) -> bool:
        """Start the next concatenated stream, if one follows (after any zero padding); False at the end.
        Bytes that do not start a stream are ignored, as gzip, bz2 and xz's own readers ignore them."""
        if not self._restart:
            return False
        rest = self._decompressor.unused_data
        while len(rest := rest.lstrip(b"\0")) < len(self._restart) and (more := self._raw.read(CHUNK)):
            rest += more
        if not rest.startswith(self._restart):
            return False
        self._decompressor, self._pending = self._new(), rest
        return True


def open_unpacked(path: Path, cap: int, too_large: str) -> io.BufferedReader:
    """The file at `path`, unpacked through gzip, bzip2 or xz when its first bytes say so (else as it is),
    through a CappedReader of `cap` bytes. The caller closes it."""
    raw = open(path, "rb")
    magic = raw.read(len(XZ_MAGIC))
    raw.seek(0)
    new, restart = _format(magic)
    return io.BufferedReader(CappedReader(raw, new, cap=cap, too_large=too_large, restart=restart, close_raw=True),
                             buffer_size=CHUNK)


def _format(magic: bytes) -> tuple[Callable[[], Decompressor] | None, bytes]:
    """(decompressor maker, magic of a concatenated stream) for data starting with `magic`."""
    if magic.startswith(GZIP_MAGIC):
        return (lambda: Inflate(16 + zlib.MAX_WBITS)), GZIP_MAGIC
    if magic.startswith(BZIP2_MAGIC):
        return bz2.BZ2Decompressor, BZIP2_MAGIC
    if magic.startswith(XZ_MAGIC):
        return xz_decompressor, XZ_MAGIC
    return None, b""

