"""The class names a model predicts, stored beside it.

A run writes its model's class names, in output order, to classes.json next to
model.keras (and `publish` copies it); `predict`, `evaluate` and every page read
them from there. A model without the file is a CIFAR-10 model when it has ten
outputs (everything trained before class lists came from the data).
"""

from __future__ import annotations

import json
from pathlib import Path

from cifar_core import CLASS_NAMES
from cifar_core.atomic_io import atomic_write_text

CLASSES_FILE = "classes.json"


def write_class_names(folder: Path, names: tuple[str, ...]) -> None:
    """Store `names` (the model's outputs, in order) in `folder`/classes.json, atomically."""
    atomic_write_text(Path(folder) / CLASSES_FILE, json.dumps({"class_names": list(names)}, indent=2))


def model_class_names(model_path: Path, num_outputs: int | None = None) -> tuple[str, ...]:
    """The class names of the model saved at `model_path`.

    Args:
        num_outputs: the model's output width, when known: a classes.json that does not
            match it is ignored, and a model with neither gets "class 0", "class 1", ...
    """
    try:
        names = json.loads((Path(model_path).parent / CLASSES_FILE).read_text()).get("class_names")
    except (OSError, ValueError, AttributeError):
        names = None
    if isinstance(names, list) and all(isinstance(n, str) for n in names) and len(names) >= 2:
        if num_outputs is None or len(names) == num_outputs:
            return tuple(names)
    if num_outputs is None or num_outputs == len(CLASS_NAMES):
        return CLASS_NAMES
    return tuple(f"class {i}" for i in range(num_outputs))
