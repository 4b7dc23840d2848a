"""Which runs' curves and accuracies can be compared: those that learned the same dataset and the same classes.

A 5-class run's validation accuracy (chance 20%) next to a 10-class run's (chance 10%),
or curves measured on another dataset, look comparable on one axis but are not.
A dataset is known by its record (data/identity.py): by its fingerprint when the run recorded one (so a
copy of the data in another folder is the same dataset), else by the folder its settings name. Sentences
name it by its name, never by a folder that may not exist on this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifar_core.data import identity, locate
from cifar_core.data.identity import DatasetRecord

KERAS_DOWNLOAD = identity.KERAS_NAME


@dataclass(frozen=True, eq=False)
class DataKey:
    """What a run learned from: its dataset (the fingerprint its record holds, and the resolved data folder its
    settings name; None for Keras' download) and its classes (sorted, case-folded; None for every class of the
    dataset). `name` is how a sentence names the dataset."""

    fingerprint: str | None
    folder: str | None
    classes: tuple[str, ...] | None
    name: str = KERAS_DOWNLOAD

    def same_dataset(self, other: "DataKey") -> bool:
        """The same files when both fingerprints are known (wherever the folders are), else the same folder."""
        if self.fingerprint and other.fingerprint:
            return self.fingerprint == other.fingerprint
        return self.folder == other.folder

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DataKey) and self.classes == other.classes and self.same_dataset(other)

    def __hash__(self) -> int:  # equal keys have equal classes
        return hash(self.classes)

    def describe(self) -> str:
        classes = "every class" if self.classes is None else f"{len(self.classes)} classes ({', '.join(self.classes)})"
        return f"{classes} of {self.name}"


def data_key(config: dict[str, Any], record: DatasetRecord | None = None) -> DataKey:
    """The DataKey of a run's (or a model folder's) settings and, when known, its dataset record."""
    folder = identity.stored_folder(config.get("data_dir")) or locate.data_dir(config.get("data_dir"))
    classes = config.get("classes")
    return DataKey(record.fingerprint if record is not None else None, str(Path(folder).resolve()) if folder else None,
                   tuple(sorted(c.casefold() for c in classes)) if classes else None,
                   record.name if record is not None else identity.dataset_name(folder))


def datasets(keys: dict[str, DataKey], names: list[str]) -> list[DataKey]:
    """One key for each dataset the runs `names` learned, in the order of `names` (its first run's key)."""
    found: list[DataKey] = []
    for name in names:
        if not any(key.same_dataset(keys[name]) for key in found):
            found.append(keys[name])
    return found


def same_data(keys: dict[str, DataKey], anchor: str) -> list[str]:
    """The names in `keys` (in its order) whose data and classes are those of `anchor`."""
    return [name for name, key in keys.items() if key == keys[anchor]]


def same_dataset(keys: dict[str, DataKey], anchor: DataKey) -> list[str]:
    """The names in `keys` (in its order) that learned the dataset of `anchor`, whatever their classes."""
    return [name for name, key in keys.items() if key.same_dataset(anchor)]


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
