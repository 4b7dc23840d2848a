"""The one base of the errors the studio reports to a user in words, and how an error is worded.

Each module raises its own kind (RunError, DataError, ModelLoadError, ...); all
derive from StudioError, whose message is the whole report (no traceback, no
type name), so the CLI and the pages catch one type.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

# Below this much free space an I/O error is taken for a full disk (see disk_full).
NEARLY_FULL_BYTES = 64 << 20


class StudioError(Exception):
    """An error worded for the user. `exit_code`: what the CLI exits with (2: the command or its arguments
    cannot be used as given; 1: the work itself failed)."""

    exit_code = 1


def disk_full(err: BaseException | None, folder: Path | None = None) -> bool:
    """True if `err`, or an error it arose from, says the disk is full. With `folder`, SQLite's vaguer
    "disk I/O error" (what it reports when a full disk stops a journal write) counts too while
    `folder`'s disk has almost no space left."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(err).lower()
        if "no space left" in text or "disk is full" in text:  # h5py and SQLite put it in words
            return True
        if folder is not None and "disk i/o error" in text and _nearly_full(folder):
            return True
        err = err.__cause__ or err.__context__
    return False


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def error_text(err: BaseException, run_id: str | None = None, folder: Path | None = None) -> str:
    """How an error that ended a training is reported: train.log, the run index, the terminal.
    `folder`: the artifacts folder, whose free space tells a full disk from another I/O error."""
    resume = f"; `python -m cifar_core train --resume {run_id}` continues from the last completed epoch" if run_id else ""
    if isinstance(err, KeyboardInterrupt):
        return str(err) or "stopped by an interrupt (Ctrl-C)"
    if disk_full(err, folder):
        where = getattr(err, "filename", None)
        return f"no space left on device{f' writing {where}' if where else ''}: free some space{resume}"
    if isinstance(err, StudioError) and str(err):
        return str(err)  # the studio's own errors (bad data, weights, runs) are worded for users already
    return f"{type(err).__name__}: {err}"  # anything else: its type says where it came from


def clip(text: str, limit: int = 300) -> str:
    """A fragment quoted inside a sentence (an exception's text, a member's name): on one line (line breaks and
    runs of spaces become one space), cut to `limit` characters with "…", so that a sentence quoting a file's
    contents (a model's 42 KB config) stays one sentence. `readable` bounds a whole message instead."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def shown(name: object, limit: int = 80) -> str:
    """A name from outside (a member of an archive, a folder on disk, a path) as it can be printed: bytes
    that are not UTF-8 (kept by Python as lone surrogates) as \\xNN escapes, cut to `limit` characters."""
    text = str(name)
    if not is_text(text):
        try:
            text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a surrogate that stands for no byte
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return clip(text, limit)


def is_text(name: str) -> bool:
    """Whether `name` is text: Python keeps the bytes of a file name that are not UTF-8 as lone surrogates,
    which can be neither printed nor written to a UTF-8 file."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


MESSAGE_WIDTH = 500  # characters of one line of a message: room for a sentence and two long paths
MESSAGE_LINES = 12
WORD_WIDTH = 160  # characters of one word (a path, a name, a dumped value without spaces) in a message too long


def readable(text: object, width: int = MESSAGE_WIDTH, lines: int = MESSAGE_LINES) -> str:
    """`text` cut to a readable length for a terminal or a page, so that a message quoting a hostile file or name
    (a 42 KB config, a 100,000-character name) stays a message: at most `lines` lines, and each line longer than
    `width` first loses the middle of its longest words (over WORD_WIDTH characters), then, if still too long,
    its own middle, keeping its start (what is wrong) and its end (what to do)."""
    rows = str(text).splitlines() or [""]
    cut = [_cut_line(row, width) for row in rows[:lines]]
    if len(rows) > lines:
        cut.append(f"… and {len(rows) - lines:,} more lines")
    return "\n".join(cut)


def _cut_line(row: str, width: int) -> str:
    if len(row) <= width:
        return row
    row = " ".join(_middle(word, WORD_WIDTH) for word in row.split(" "))
    return _middle(row, width)


def _middle(text: str, width: int) -> str:
    """`text` with its middle replaced by " … " when longer than `width`: two thirds of its start, a third of its end."""
    if len(text) <= width:
        return text
    head = (width - 3) * 2 // 3
    return f"{text[:head]} … {text[len(text) - (width - 3 - head):]}"
