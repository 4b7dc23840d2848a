"""Where the studio keeps its files. One place, so tests can point it at a temp folder."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """`$CIFAR_ARTIFACTS` if set, else `artifacts/` in the project."""
    return Path(os.environ.get("CIFAR_ARTIFACTS") or PROJECT_ROOT / "artifacts")


def cache_dir() -> Path:
    return artifacts_dir() / "cache"


def default_model_dir() -> Path:
    """The shipped model, used when no run has completed yet (`$CIFAR_DEFAULT_MODEL_DIR` overrides it,
    so tests can stand in a folder with no model)."""
    return Path(os.environ.get("CIFAR_DEFAULT_MODEL_DIR") or PROJECT_ROOT / "artifacts" / "default")


def data_dir(given: str | None = None) -> str | None:
    """The data folder to use: `given` (a --data-dir or form value), else `$CIFAR10_DIR`, else None
    (Keras' download). The one place this rule is written."""
    return given or os.environ.get("CIFAR10_DIR") or None
