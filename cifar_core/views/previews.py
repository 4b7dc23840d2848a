"""Images drawn for people: previews of uploaded files and enlarged 32x32 thumbnails."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def thumbnail(data: bytes, size: int = 160) -> np.ndarray | None:
    """An RGB preview of an uploaded image file, or None when it cannot be drawn.

    Browsers (and st.image) choke on some files the classifier accepts, e.g.
    16-bit PNGs or CMYK JPEGs; this goes through the classifier's own conversion.
    """
    from PIL import Image, ImageOps

    from cifar_core.predict.inference import to_rgb

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at reduced scale
            im = ImageOps.exif_transpose(im)
            im.thumbnail((size, size))
            return np.asarray(to_rgb(im), dtype=np.uint8)
    except Exception:  # PIL signals bad files with many exception types; the caller shows the file's error
        return None


def upscale(image: np.ndarray, factor: int = 3) -> np.ndarray:
    """Nearest-neighbour enlargement, so 32x32 thumbnails stay crisp instead of blurred by the browser."""
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def square_tile(path: str | Path, size: int) -> np.ndarray | None:
    """An image file as a size x size preview (fitted, small images enlarged crisply, padded white),
    or None when it cannot be read or drawn; pairs of such tiles line up whatever the files' shapes."""
    try:
        image = thumbnail(Path(path).read_bytes(), size)
    except OSError:
        return None
    if image is None:
        return None
    image = upscale(image, max(1, size // max(image.shape[:2])))[:size, :size]
    out = np.full((size, size, 3), 255, np.uint8)
    top, left = (size - image.shape[0]) // 2, (size - image.shape[1]) // 2
    out[top:top + image.shape[0], left:left + image.shape[1]] = image
    return out
