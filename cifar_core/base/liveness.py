"""Whether the process that holds a run still runs: pid + start time + host, read from /proc.

Three answers, not two: a process on another host, or one whose start time was
never recorded (an index upgraded from before that column) while its pid is in
use, cannot be told from an unrelated process. Such a run is "unknown": it never
blocks a new training, and the user can mark it failed (`runs --repair`, or the
Runs page's button).
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

ALIVE, DEAD, UNKNOWN = "alive", "dead", "unknown"
# Linux's largest pid (/proc/sys/kernel/pid_max can be at most 2**22); a larger stored pid is damage.
MAX_PID = 1 << 22


def process_start(pid: int) -> int | None:
    """When process `pid` started (clock ticks after boot, from /proc), or None where that cannot be read."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    with contextlib.suppress(OSError, IndexError):
        # A zombie child (killed, not yet reaped by its parent) is dead for our purposes.
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def liveness(pid: object, host: object, start: object) -> str:
    """ALIVE, DEAD or UNKNOWN for the process a run recorded: `pid` on `host`, started at `start`."""
    if not isinstance(pid, int) or isinstance(pid, bool) or not 0 < pid <= MAX_PID:
        return DEAD  # no process, or a damaged value that no process can have
    if host and host != socket.gethostname():
        return UNKNOWN  # another machine's process (or this one under an earlier name): we cannot look
    if not _exists(pid):
        return DEAD
    if not isinstance(start, int):
        return UNKNOWN  # the pid is in use, but maybe by an unrelated process since
    # The pid may have been reused by an unrelated process since: then it started at another time.
    return ALIVE if process_start(pid) in (start, None) else DEAD
