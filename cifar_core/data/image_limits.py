"""What an image file may cost before it is decoded: its size on disk and the pixels its header declares.

Shared by uploads and `predict` (inference.py) and by training data (data.py):
a small file can declare a canvas of gigabytes, so sizes are checked from the
header, before any pixel is decoded.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from PIL import Image

from cifar_core.base.errors import StudioError

MAX_PIXELS = 40_000_000
MAX_FILE_BYTES = 50 * 2**20
# The formats a user's image may come in (Pillow reads them all): the Classify page's uploader accepts these file
# endings, and the message for a file that is none of them names these formats, so the two always agree.
FORMATS = {"PNG": ("png",), "JPEG": ("jpg", "jpeg"), "WebP": ("webp",), "GIF": ("gif",), "BMP": ("bmp",), "TIFF": ("tif", "tiff")}
UPLOAD_TYPES = [ending for endings in FORMATS.values() for ending in endings]


class ImageError(StudioError, ValueError):
    """The file cannot be turned into an image; the message says why."""


def webp_canvas_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP header declares (RFC 9649), or None for other files.

    libwebp allocates the whole canvas when Pillow merely opens the file, so WebP
    sizes must be checked before Image.open, unlike every other format.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    kind = data[12:16]
    if kind == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if kind == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if kind == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def check_pixels(size: tuple[int, int]) -> None:
    """ImageError if a declared width x height is over MAX_PIXELS."""
    w, h = size
    if w * h > MAX_PIXELS:
        raise ImageError(f"the image declares {w}x{h} pixels; the limit is {MAX_PIXELS:,} pixels")


def check_size(n_bytes: int) -> None:
    """ImageError if a file of `n_bytes` is over MAX_FILE_BYTES."""
    if n_bytes > MAX_FILE_BYTES:
        raise ImageError(f"the file is {n_bytes / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB")


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file, or ImageError, decided before reading: a FIFO or a device
    (/dev/zero) would block or never end, and a huge file would be read whole."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageError("not a regular file (a folder, device or pipe)")
        check_size(info.st_size)
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ImageError(f"cannot read the file ({err.strerror or err})") from err
    check_size(len(data))  # it may have grown since
    return data


def plain_message(err: BaseException) -> str:
    """Why an image library could not decode a file, in words (no exception names or object reprs)."""
    text = str(err)
    lowered = text.lower()
    if isinstance(err, ImageError):  # ours: already in words
        return text
    if isinstance(err, Image.UnidentifiedImageError):
        return f"not an image format that can be read ({', '.join(FORMATS)})"
    if isinstance(err, Image.DecompressionBombError):
        return "the image is too large to decode safely: it declares more pixels than the limit"
    if "truncated" in lowered or "broken data stream" in lowered:
        return "the image data is truncated or damaged"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror.lower()
    # Pillow's other messages are plain words, but may embed reprs such as "<_io.BytesIO object at 0x...>".
    text = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the data", text).strip()
    return f"the image data is damaged ({text})" if text else "the image data is damaged"
