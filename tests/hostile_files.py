"""Builders of hostile archives for the tests: compressed streams that unpack to far more than their headers
declare, zips written byte by byte (any method, any declared size, any name bytes), and the peak-memory
measure. Each builds in well under a second, except where the docstring says otherwise."""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

_BZ2_END = 0x177245385090  # the 48-bit magic that ends a bzip2 stream, before its 32-bit combined CRC


def peak_rss_growth_mb(fn) -> float:
    """Peak resident memory reached while running `fn`, above the resident memory before it."""
    def status(key: str) -> int:
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key))

    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak-RSS counter on this kernel")
    before = status("VmRSS:")
    fn()
    return (status("VmHWM:") - before) / 1024


def _bzip2_block_of_zeros() -> tuple[int, int, int]:
    """(the bits of a bzip2 block of 40 MiB of zeros, their number, the block's CRC)."""
    stream = bz2.compress(bytes(40 << 20), 9)  # one 900k block after bzip2's run-length step
    value, nbits = int.from_bytes(stream, "big"), len(stream) * 8
    crc = int.from_bytes(stream[10:14], "big")  # after "BZh9" and the block's 48-bit magic (byte-aligned here)
    for pad in range(8):
        tail = (value >> pad) & ((1 << 80) - 1)
        if tail >> 32 == _BZ2_END and tail & 0xFFFFFFFF == crc:  # one block: the combined CRC is the block's
            block_bits = nbits - 32 - 80 - pad
            return (value >> (pad + 80)) & ((1 << block_bits) - 1), block_bits, crc
    raise AssertionError("not a one-block bzip2 stream")


def bzip2_zeros(gib: float) -> bytes:
    """A bzip2 stream of about `gib` GiB of zeros, made by repeating one block's bits (bzip2 blocks are
    independent): 1.9 GiB take about 1.4 KB, built in a second instead of compressing the zeros (20 s)."""
    block, block_bits, crc = _bzip2_block_of_zeros()
    blocks = max(1, round(gib * 2**30 / 40 / 2**20))
    value, combined = 0, 0
    for _ in range(blocks):
        value = (value << block_bits) | block
        combined = (((combined << 1) | (combined >> 31)) & 0xFFFFFFFF) ^ crc
    value = (((value << 48) | _BZ2_END) << 32) | combined
    nbits = blocks * block_bits + 80
    pad = -nbits % 8
    return b"BZh9" + (value << pad).to_bytes((nbits + pad) // 8, "big")


def lzma_zeros(mib: int) -> bytes:
    """A raw LZMA1 stream of `mib` MiB of zeros with an end marker, as a zip's LZMA member holds it after its
    own 9-byte header (about 9 ms per MiB here: slow tests only for gigabytes)."""
    compressor = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA1, "dict_size": 1 << 20,
                                                                 "mode": lzma.MODE_FAST, "nice_len": 273}])
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(mib)) + compressor.flush()


def zip_lzma_member(raw: bytes, dict_size: int = 1 << 20) -> bytes:
    """A zip LZMA member's data: version 2 bytes, properties size 2 bytes, lc/lp/pb and the dictionary size."""
    return struct.pack("<BBHB", 9, 4, 5, 3 + 9 * (0 + 5 * 2)) + struct.pack("<I", dict_size) + raw


def with_xz_dictionary(stream: bytes, dict_byte: int) -> bytes:
    """An .xz stream whose first block header declares another LZMA2 dictionary (its CRC32 made right
    again): 38 declares 2 GiB. The data is unchanged, so only the declared dictionary differs."""
    data = bytearray(stream)
    at = 12  # after the stream header: the block header, its size in 4-byte units first
    size = (data[at] + 1) * 4
    flags = data[at + 1]
    assert flags & 0x03 == 0, "one filter expected"
    pos = at + 2 + (_varint_length(data, at + 2) if flags & 0x40 else 0)
    pos += _varint_length(data, pos) if flags & 0x80 else 0
    assert data[pos:pos + 2] == b"\x21\x01", "an LZMA2 filter expected"
    data[pos + 2] = dict_byte
    data[at + size - 4:at + size] = struct.pack("<I", zlib.crc32(bytes(data[at:at + size - 4])))
    return bytes(data)


def _varint_length(data: bytearray, pos: int) -> int:
    length = 1
    while data[pos + length - 1] & 0x80:
        length += 1
    return length


@dataclass
class RawMember:
    """A zip member as written byte by byte: its data as stored (compressed or not) and what it declares."""

    name: bytes
    data: bytes
    method: int = 0
    size: int | None = None  # declared uncompressed size; default len(data)
    crc: int | None = None  # default crc32(data)
    flags: int = 0
    extra: bytes = b""


def raw_zip(path: Path, members: list[RawMember], *, declared_count: int | None = None) -> Path:
    """A zip written without zipfile, so that every header says what the test wants."""
    out, directory = bytearray(), bytearray()
    for m in members:
        size = len(m.data) if m.size is None else m.size
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        offset = len(out)
        out += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, m.flags, m.method, 0, 0x21, crc, len(m.data), size,
                           len(m.name), len(m.extra)) + m.name + m.extra + m.data
        directory += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, m.flags, m.method, 0, 0x21, crc,
                                 len(m.data), size, len(m.name), len(m.extra), 0, 0, 0, 0, offset) + m.name + m.extra
    count = len(members) if declared_count is None else declared_count
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), len(out), 0)
    path.write_bytes(bytes(out + directory + end))
    return path
