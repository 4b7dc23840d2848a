"""Declared-size checks of weights (.h5, .weights.h5) and models (.keras), before Keras reads them.

A file of a few kilobytes can declare arrays of gigabytes: HDF5 keeps a dataset's
shape in its header and may store nothing (a fill value), and a model's config
can declare layers of any width. Keras allocates both in full while loading, so
one such upload could take a machine's memory. These checks read only headers
and the config, and tie what a file declares to the bytes it really holds (and,
for base weights, to what the model needs).

A compressed byte can also unpack to far more than its header says: a .keras
archive is read through base/bounded_zip.py (its directory counted first, every
member unpacked once, chunk by chunk, and checked to hold exactly the bytes it
declares, so that zipfile, when Keras reads it next, cannot unpack more), and an
HDF5 dataset stored through a compression filter is refused (HDF5 grows its
buffer for whatever a gzip chunk unpacks to; Keras never compresses weights).
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import keras
import numpy as np

from cifar_core.base import bounded_json, bounded_zip, compat
from cifar_core.base.bounded_io import Damaged, UnpackError
from cifar_core.base.errors import clip
from cifar_core.model.model_cost import cost_problem

# Weights barely compress, and Keras stores them uncompressed: a file may declare at
# most this many bytes of arrays per byte it holds, plus SLACK_BYTES (harmless either way).
MAX_EXPANSION = 2
SLACK_BYTES = 16 << 20
WEIGHTS_MEMBER = "model.weights.h5"
# A Keras archive holds config.json, metadata.json, model.weights.h5 and maybe a few assets.
MAX_MEMBERS = 64
# HDF5 filters that never make a chunk larger than it is stored: shuffle (reorders bytes) and fletcher32
# (a checksum). Every other one unpacks or transforms data, and Keras writes none.
SAFE_FILTERS = {h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32}


class UnsafeFileError(ValueError):
    """A file declares more than it holds or than its model needs; the message says what."""


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MB"


def _nbytes(shape: tuple[int, ...] | None, dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize if shape is not None else 0


def declared_bytes(f: h5py.File) -> int:
    """What reading every dataset and attribute of an open HDF5 file would allocate.

    UnsafeFileError for data kept in other files (external storage, virtual
    datasets, external links): a weights file must hold its own numbers.
    """
    def attributes(obj: h5py.HLObject) -> int:
        return sum(_nbytes(aid.shape, aid.dtype) for aid in map(obj.attrs.get_id, obj.attrs))

    # h5py's visits stop at the first callback that returns something (an exception raised
    # inside one would leave h5py's lock in a bad state): the names of offenders are returned.
    linked = f.visititems_links(lambda name, link: name if isinstance(link, h5py.ExternalLink) else None)
    if linked:
        raise UnsafeFileError(f"its entry {linked} points into another file")
    sizes = [attributes(f)]

    def add(name: str, obj: h5py.HLObject) -> str | None:
        if isinstance(obj, h5py.Dataset):
            if obj.external or obj.is_virtual:
                return name
            # A chunk is read whole, so a chunk larger than its dataset costs its own size.
            sizes.append(max(_nbytes(obj.shape, obj.dtype), _nbytes(obj.chunks, obj.dtype)))
        sizes.append(attributes(obj))
        return None

    outside = f.visititems(add)
    if outside:
        raise UnsafeFileError(f"its dataset {outside} keeps its data in other files")
    return sum(sizes)


def _filtered(f: h5py.File) -> str | None:
    """The name of a dataset stored through a filter that unpacks or transforms its data, or None."""
    def check(name: str, obj: h5py.HLObject) -> str | None:
        if isinstance(obj, h5py.Dataset):
            plist = obj.id.get_create_plist()
            codes = {plist.get_filter(i)[0] for i in range(plist.get_nfilters())}
            if codes - SAFE_FILTERS:
                return name
        return None

    return f.visititems(check)


def _h5_declared(source: str | Path | BinaryIO, stored: int) -> int:
    """Declared bytes of an HDF5 file holding `stored` bytes; UnsafeFileError if they are not backed by it, or
    if a dataset is stored compressed."""
    try:
        with h5py.File(source, "r") as f:
            declared = declared_bytes(f)
            filtered = _filtered(f)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        if isinstance(err, UnsafeFileError):
            raise
        raise UnsafeFileError(f"it is not a readable HDF5 file ({clip(err, 160)})") from err
    if declared > MAX_EXPANSION * stored + SLACK_BYTES:
        raise UnsafeFileError(f"it declares {_mb(declared)} of arrays but holds only {_mb(stored)}")
    if filtered:
        raise UnsafeFileError(f"its dataset {clip(filtered, 80)} is stored compressed: a compressed chunk can unpack to far "
                              "more than it declares, and weights are stored uncompressed")
    return declared


def check_weights_file(path: str | Path, expected_bytes: int) -> None:
    """UnsafeFileError unless a weights file's arrays are backed by its bytes and fit a model of `expected_bytes`."""
    declared = _h5_declared(path, os.path.getsize(path))
    # Twice the model: room for a float64 file; anything beyond is not this model's weights.
    if declared > 2 * expected_bytes + SLACK_BYTES:
        raise UnsafeFileError(f"it declares {_mb(declared)} of arrays; the model's weights take {_mb(expected_bytes)}")


def dry_build(config: dict[str, Any]) -> tuple[int, str | None]:
    """(bytes of the variables a Keras model config declares, why running it would cost too much or None),
    found by building it without allocating its variables.

    In a StatelessScope Keras records each variable's shape and defers its
    allocation; the dry-built model is then dropped. Raises what Keras raises
    for a config it cannot build (safe mode: no Lambda layers or pickled code).
    """
    with compat.own_pending_variables(), keras.StatelessScope(initialize_variables=False):
        model = keras.saving.deserialize_keras_object(_without_compile(config), safe_mode=True)
    return sum(_nbytes(tuple(v.shape), np.dtype(v.dtype)) for v in model.weights), cost_problem(model)


def _without_compile(config: Any) -> Any:
    """A copy of a model config without its (nested) compile settings: optimizers cannot be dry-built, and are not needed."""
    if isinstance(config, dict):
        return {k: _without_compile(v) for k, v in config.items() if k != "compile_config"}
    if isinstance(config, list):
        return [_without_compile(v) for v in config]
    return config


def check_keras_file(path: str | Path) -> None:
    """UnsafeFileError unless a .keras archive's members, weights and layers are backed by its bytes."""
    try:
        with bounded_zip.open_zip(Path(path), MAX_MEMBERS) as z, open(path, "rb") as raw:
            members = z.infolist()
            _check_declared_sizes(members, os.path.getsize(path))
            for info in members:  # each unpacks to exactly what it declares: zipfile can then unpack no more
                bounded_zip.verify_member(raw, info)
            weights = z.getinfo(WEIGHTS_MEMBER)
            with z.open(weights) as member:
                declared = _h5_declared(member, weights.file_size)
            config = bounded_json.loads(bounded_zip.read_member(raw, z.getinfo("config.json")), what="its config.json")
    except Damaged as err:
        raise UnsafeFileError(f"it is not a complete Keras archive: it {err}") from None
    except UnpackError as err:
        raise UnsafeFileError(f"it {err}") from None
    except bounded_json.JSONError as err:
        raise UnsafeFileError(str(err)) from None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, UnsafeFileError):
            raise
        raise UnsafeFileError(f"it is not a complete Keras archive ({clip(err, 160)})") from err
    if not isinstance(config, dict):
        raise UnsafeFileError("its config.json is not a model configuration")
    try:
        needed, too_costly = dry_build(config)
    except Exception as err:  # Keras reports a config it cannot build with many exception types
        raise UnsafeFileError(f"its configuration does not build a model ({clip(err, 160)})") from err
    if too_costly:
        raise UnsafeFileError(too_costly)
    if needed > declared + SLACK_BYTES:
        raise UnsafeFileError(f"its layers declare {_mb(needed)} of weights but its weights file holds {_mb(declared)}")


def _check_declared_sizes(members: list[zipfile.ZipInfo], archive_bytes: int) -> None:
    """UnsafeFileError when a member, or all of them, declare more than the archive's bytes can hold."""
    for info in members:
        if info.file_size > MAX_EXPANSION * info.compress_size + SLACK_BYTES:
            raise UnsafeFileError(f"its member {clip(info.filename, 80)} declares {_mb(info.file_size)} "
                                  f"but holds {_mb(info.compress_size)}")
    total = sum(info.file_size for info in members)
    if total > MAX_EXPANSION * archive_bytes + SLACK_BYTES:
        raise UnsafeFileError(f"its files declare {_mb(total)} in total but the archive holds {_mb(archive_bytes)}")
