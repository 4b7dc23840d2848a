"""Which runs' curves can be compared: those trained on the same data folder and the same classes.

A 5-class run's validation accuracy (chance 20%) next to a 10-class run's (chance 10%),
or curves measured on another dataset, look comparable on one axis but are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_core.data import locate

KERAS_DOWNLOAD = "Keras' CIFAR-10 download"


@dataclass(frozen=True)
class DataKey:
    """What a run learned from: its data folder (resolved; None for Keras' download) and its classes
    (sorted, case-folded; None for every class of the folder)."""

    folder: str | None
    classes: tuple[str, ...] | None

    def describe(self) -> str:
        classes = "every class" if self.classes is None else f"{len(self.classes)} classes ({', '.join(self.classes)})"
        return f"{classes} of {self.folder or KERAS_DOWNLOAD}"


def data_key(config: dict[str, Any]) -> DataKey:
    """The DataKey of a run's (or a model folder's) settings."""
    folder = locate.data_dir(config.get("data_dir"))
    classes = config.get("classes")
    return DataKey(str(Path(folder).resolve()) if folder else None,
                   tuple(sorted(c.casefold() for c in classes)) if classes else None)


def same_data(keys: dict[str, DataKey], anchor: str) -> list[str]:
    """The names in `keys` (in its order) whose data and classes are those of `anchor`."""
    return [name for name, key in keys.items() if key == keys[anchor]]


def not_comparable(keys: dict[str, DataKey], selected: list[str]) -> str | None:
    """A sentence naming the selected runs trained on other data or classes than the first selected, or None."""
    if not selected:
        return None
    first = keys[selected[0]]
    others = [name for name in selected[1:] if keys[name] != first]
    if not others:
        return None
    return (f"Not comparable: {selected[0]} learned {first.describe()}, but "
            + "; ".join(f"{name} learned {keys[name].describe()}" for name in others)
            + ". Accuracies on other classes or data (another chance level) do not compare.")
