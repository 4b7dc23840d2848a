"""Fault injection for the resilience tests: make the trainer stop or fail at a named point.

`CIFAR_FAULT=<point>[@<n>]:<action>` acts the n-th time (default: the first) this
process reaches `point(<point>)`. Actions:
  park    touch the file named by CIFAR_FAULT_PARKED, then sleep (the test kills the process)
  enospc  raise OSError(ENOSPC), as a full disk would
Points: data_load, batch, backup_write, checkpoint_save, evaluate; import_built (a dataset built, not yet
in place) and swap_between_renames (folder_swap's two-rename --replace). Without
CIFAR_FAULT every point does nothing.
"""

from __future__ import annotations

import errno
import os
import time
from collections import Counter

_reached: Counter[str] = Counter()


def point(name: str) -> None:
    """Act here if CIFAR_FAULT names this point and this is the occurrence it names."""
    spec = os.environ.get("CIFAR_FAULT")
    if not spec:
        return
    _reached[name] += 1
    where, _, action = spec.partition(":")
    target, _, nth = where.partition("@")
    if target != name or _reached[name] != int(nth or 1):
        return
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if action == "park":
        open(os.environ["CIFAR_FAULT_PARKED"], "w").close()
        while True:
            time.sleep(60)
    raise ValueError(f"CIFAR_FAULT: unknown action {action!r} (park or enospc)")
