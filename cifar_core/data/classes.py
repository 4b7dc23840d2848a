"""The class names a model predicts, stored beside it.

A run writes its model's class names, in output order, to classes.json next to
model.keras (and `publish` copies it); `predict`, `evaluate` and every page read
them from there. A model without the file is a CIFAR-10 model when it has ten
outputs (everything trained before class lists came from the data).
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from pathlib import Path

from cifar_core.base import bounded_json
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.base.bounded_json import JSONError
from cifar_core.base.errors import StudioError

# CIFAR-10's classes, only where they truly are CIFAR-10's: Keras' download, the python-batches layout, and a
# model saved before class lists (classes.json). Every other class list comes from the data or the model.
CLASS_NAMES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)

CLASSES_FILE = "classes.json"
# A classes.json is read whole before it is checked: 1 MiB holds 5,000 names of the longest
# allowed length, far beyond any classifier here, and keeps a hostile file from filling memory.
MAX_CLASSES_BYTES = 1 << 20
# Long enough for any real label (ImageNet's longest is 120 characters), short enough to show on a page or in a file name.
MAX_NAME_CHARS = 200
# Control characters (newlines, NUL...) and bidirectional embeddings, overrides and isolates: they break
# one-line messages, CSV rows and file names, or make a name read differently from what it is ("Trojan Source").
_HIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# Characters that draw nothing: Unicode's format characters (category Cf: zero-width space and joiners, soft
# hyphen, word joiner, byte-order mark...) and these default-ignorable letters and marks (combining grapheme
# joiner, Hangul fillers, Khmer inherent vowels, Mongolian and Unicode variation selectors) and the blank
# Braille pattern.
_DRAWS_NOTHING = {*"\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0",
                  *map(chr, range(0xFE00, 0xFE10)), *map(chr, range(0xE0100, 0xE01F0))}

log = logging.getLogger(__name__)


class ClassesError(StudioError, ValueError):
    """A model's classes.json cannot be used (too big, not a list of names, or not matching the model)."""


def class_names_problem(names: object) -> str | None:
    """Why `names` cannot be a model's class list, in words, or None: it must be a list of at least two
    different, non-blank strings of at most MAX_NAME_CHARS characters, without control characters."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        return "the class names must be a list of strings"
    if len(names) < 2:
        return f"at least two class names are needed, found {len(names)}"
    if blank := [i for i, n in enumerate(names) if not n.strip()]:
        return f"class names must not be empty or blank (position {', '.join(map(str, blank[:5]))})"
    if long := [n for n in names if len(n) > MAX_NAME_CHARS]:
        return (f"class names may be at most {MAX_NAME_CHARS} characters long; {long[0][:40]!r}… has "
                f"{len(long[0]):,}")
    if hidden := [n for n in names if _HIDDEN.search(n)]:
        return ("class names must not hold control characters (line breaks, tabs, NUL) or bidirectional-text "
                f"controls: {', '.join(repr(n[:60]) for n in hidden[:5])}")  # repr writes them as \n, \u202e...
    if len(set(names)) != len(names):
        repeated = sorted(n for n, count in Counter(names).items() if count > 1)
        return f"each class must be named once; repeated: {', '.join(map(repr, repeated[:5]))}"
    return None


def lookalike_key(name: str) -> str:
    """What a name reads as: its Unicode compatibility form (NFKC) case-folded, without the characters that
    draw nothing, runs of spaces as one, no spaces at either end. Two names with one key look alike."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    visible = "".join(ch for ch in folded if ch not in _DRAWS_NOTHING and unicodedata.category(ch) != "Cf")
    return " ".join(visible.split())


def lookalike_problem(names: list[str] | tuple[str, ...]) -> str | None:
    """Why some of `names` cannot be told apart when read, in words naming the first pair (names that differ
    only in case, Unicode form, spaces at either end, or invisible characters), or a name made only of
    invisible characters; None when every name reads differently."""
    seen: dict[str, str] = {}
    for name in names:
        key = lookalike_key(name)
        if not key:
            codes = f" ({ascii(name)})" if ascii(name) != repr(name) else ""
            return f"the class name {name!r}{codes} is made only of invisible characters"
        if (other := seen.setdefault(key, name)) != name:
            pair = f"{other!r} and {name!r}"
            if repr(other) == repr(name) or not key.isascii():  # they even print alike: show their code points
                pair += f" ({ascii(other)} and {ascii(name)})"
            return (f"the class names {pair} look alike: they differ only in case, Unicode form, spaces or invisible "
                    "characters")
    return None


def write_class_names(folder: Path, names: tuple[str, ...]) -> None:
    """Store `names` (the model's outputs, in order) in `folder`/classes.json, atomically."""
    atomic_write_text(Path(folder) / CLASSES_FILE, json.dumps({"class_names": list(names)}, indent=2))


def model_class_names(model_path: Path, num_outputs: int | None = None) -> tuple[str, ...]:
    """The class names of the model saved at `model_path`.

    Args:
        num_outputs: the model's output width, when known: a classes.json must match it,
            and a model with neither gets "class 0", "class 1", ...

    ClassesError, saying what is wrong, when classes.json exists but cannot be used.
    """
    file = Path(model_path).parent / CLASSES_FILE
    if file.exists():
        return _read_class_names(file, num_outputs)
    if num_outputs is None or num_outputs == len(CLASS_NAMES):
        return CLASS_NAMES
    return tuple(f"class {i}" for i in range(num_outputs))


def _read_class_names(file: Path, num_outputs: int | None) -> tuple[str, ...]:
    """The names in `file` (a classes.json), checked; ClassesError saying what is wrong otherwise."""
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_CLASSES_BYTES + 1)
    except OSError as err:
        raise ClassesError(f"{file} cannot be read: {err.strerror or err}") from err
    if len(raw) > MAX_CLASSES_BYTES:
        raise ClassesError(f"{file} is larger than {MAX_CLASSES_BYTES // 2**20} MiB: a class list is far smaller, "
                           "so this is not one")
    try:
        data = bounded_json.loads(raw, what=str(file), max_bytes=MAX_CLASSES_BYTES)
    except JSONError as err:  # bad UTF-8 or JSON, or nested too deeply to parse
        raise ClassesError(f'{err}; it should read {{"class_names": ["cat", "dog", ...]}}') from err
    names = data.get("class_names") if isinstance(data, dict) else None
    if names is None:
        raise ClassesError(f'{file} has no "class_names" list; it should read {{"class_names": ["cat", "dog", ...]}}')
    if problem := class_names_problem(names):
        raise ClassesError(f"{file}: {problem}")
    if num_outputs is not None and len(names) != num_outputs:
        raise ClassesError(f"{file} names {len(names)} classes but the model beside it has {num_outputs} outputs: "
                           "it belongs to another model")
    if lookalike := lookalike_problem(names):  # a new import refuses them; a model trained before still works
        log.warning("%s: %s; the model is used as it is, but those classes are hard to tell apart.", file, lookalike)
    return tuple(names)
