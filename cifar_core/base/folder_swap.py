"""Building a folder beside its final place and swapping it in, safe under kill -9 and concurrent builders.

A build folder is named `.tmp-<name>-<pid>-<start>-<random>`: the builder's process id and start time
(liveness.py) say, without any age rule, whether it is still being written. A name is claimed by its build
folder: while one of a live process exists, another build of that name is refused (`live_builder`). The
finished folder replaces the old one in one step where the system can exchange two names (Linux's
renameat2 RENAME_EXCHANGE); elsewhere the old one is first renamed to `.old-<name>-<pid>-<start>`, and a
process killed between the two renames leaves it there: `recover` puts it back when its owner is dead and
the name is empty, and removes the build folders of dead processes. Every claim, swap and recovery happens
under one lock on the parent folder (flock, released by the kernel when its process dies), held briefly.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

from cifar_core.base import faults
from cifar_core.base.liveness import DEAD, liveness, process_start

TMP, OLD = ".tmp-", ".old-"
# Build folders written before their names carried a process (a version of the studio from before) are
# judged by age: no import runs this long.
LEGACY_STALE_SECONDS = 24 * 3600
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


@contextlib.contextmanager
def locked(root: Path, wait: bool = True) -> Iterator[bool]:
    """Hold the lock of the folder `root` (True), or yield False at once if `wait` is False and another
    process holds it."""
    fd = os.open(root, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _me() -> str:
    return f"{os.getpid()}-{process_start(os.getpid()) or 0}"


def new_build(root: Path, name: str) -> Path:
    """A new, empty build folder for `name` in `root`, named after this process (call under `locked`)."""
    build = root / f"{TMP}{name}-{_me()}-{secrets.token_hex(4)}"
    build.mkdir()
    return build


def _owner(entry: str) -> tuple[str, str, int, int] | None:
    """(".tmp-" or ".old-", the name, pid, start) of a build or old folder's name, or None for another name."""
    prefix = entry[:5]
    if prefix not in (TMP, OLD):
        return None
    parts = entry[5:].rsplit("-", 3 if prefix == TMP else 2)
    numbers = parts[1:3]
    if len(parts) != (4 if prefix == TMP else 3) or not all(n.isascii() and n.isdigit() for n in numbers):
        return None
    return prefix, parts[0], int(numbers[0]), int(numbers[1])


def _dead(pid: int, start: int) -> bool:
    return liveness(pid, None, start or None) == DEAD


def live_builder(root: Path, name: str, mine: Path | None = None) -> int | None:
    """The process id of a live process building `name` in `root` (in another build folder than `mine`),
    else None (call under `locked`)."""
    for entry in os.listdir(root):
        if (owner := _owner(entry)) and owner[:2] == (TMP, name) and entry != getattr(mine, "name", None) and not _dead(*owner[2:]):
            return owner[2]
    return None


def recover(root: Path, remove: bool = True) -> None:
    """Put back each `.old-<name>-*` whose owner died between its two renames, where `<name>` is empty;
    with `remove`, remove the build and old folders that dead processes left (call under `locked`)."""
    for entry in sorted(os.listdir(root)):
        owner = _owner(entry)
        path = root / entry
        if owner is None:
            if remove and entry.startswith((TMP, OLD)) and _legacy_stale(path):
                shutil.rmtree(path, ignore_errors=True)
            continue
        kind, name, pid, start = owner
        if not _dead(pid, start):
            continue
        final = root / name
        if kind == OLD and not (final.exists() or final.is_symlink()):
            os.rename(path, final)
        elif remove:
            shutil.rmtree(path, ignore_errors=True)


def _legacy_stale(path: Path) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > LEGACY_STALE_SECONDS
    except OSError:
        return False


def swap_into_place(build: Path, final: Path) -> None:
    """Make `build` the folder `final`; an old `final` is removed once the new one is in place (call under
    `locked`). Atomic where the system exchanges names; elsewhere `recover` finishes it after a kill."""
    if not (final.exists() or final.is_symlink()):
        os.rename(build, final)
        return
    if _exchange(build, final):
        shutil.rmtree(build, ignore_errors=True)  # it now holds the old dataset; a kill here leaves a dead .tmp-*
        return
    old = final.with_name(f"{OLD}{final.name}-{_me()}")
    os.rename(final, old)
    faults.point("swap_between_renames")
    try:
        os.rename(build, final)
    except OSError:
        os.rename(old, final)  # put the old one back
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Exchange the names `a` and `b` in one step (renameat2 RENAME_EXCHANGE); False where the system or
    its file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))
