"""Where a dataset is: the one place a data-folder value (a folder, an imported dataset's name,
`$CIFAR10_DIR`) becomes a folder. It imports only the foundations, so every data module can use it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cifar_core.base import paths

# Safe as one folder name on every system, and never a path: no separators, no leading dot or dash.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def datasets_root(artifacts: Path | None = None) -> Path:
    """Where imported datasets live: <artifacts>/datasets (artifacts: $CIFAR_ARTIFACTS or artifacts/)."""
    return Path(artifacts or paths.artifacts_dir()) / "datasets"


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a dataset, in words, or None."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".") or ".." in name:
        return (f"{name!r} cannot name a dataset: use 1 to 64 letters, digits, '-', '_' or '.', starting with a letter "
                "or digit (e.g. flowers-5)")
    return None


def resolve_data_dir(value: str | None) -> str | None:
    """A data-folder value as a folder: an existing folder stays as given; the bare name of an imported
    dataset (not also a folder here) becomes its folder; anything else stays, for the caller to report."""
    if not value or os.path.isdir(value) or name_problem(value):
        return value
    folder = datasets_root() / value
    return str(folder) if folder.is_dir() else value


def data_dir(given: str | None = None) -> str | None:
    """The data folder to use: `given` (a --data-dir or form value), else `$CIFAR10_DIR`, else None
    (Keras' download); either may name an imported dataset instead of a folder. The one place this rule is written."""
    return resolve_data_dir(given or os.environ.get("CIFAR10_DIR") or None)
