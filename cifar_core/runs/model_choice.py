"""Which trained models the studio can use, and which one it uses by default."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cifar_core.data.classes import ClassesError, model_class_names
from cifar_core.runs.outcome import usable, verdict
from cifar_core.base.paths import default_model_dir
from cifar_core.base.bounded_json import JSONError
from cifar_core.base import bounded_json
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore


@dataclass(frozen=True)
class ModelChoice:
    """A usable model: a completed or stopped run, or the shipped default model."""

    label: str
    key: str  # stable across sessions (run id, or "default"): what a URL or a saved pick names
    model_path: Path
    folder: Path
    run_id: str | None
    config: dict[str, Any]
    accuracy: float | None
    default_ok: bool = True  # may be picked by default: completed, and it learned

    @cached_property  # read once per choice: pages ask for it several times a render
    def class_names(self) -> tuple[str, ...]:
        """The classes the model predicts, in output order (its classes.json; CIFAR-10's without one)."""
        return model_class_names(self.model_path)

    @property
    def classes_problem(self) -> str | None:
        """Why the model's classes.json cannot be used, in words, or None when it can (or there is none)."""
        try:
            self.class_names
        except ClassesError as err:
            return str(err)
        return None

    @property
    def picker_label(self) -> str:
        """The label with the test accuracy first ("88.8% · shipped default model"): a narrow picker cuts
        the end of a long label, and the accuracy is what tells the models apart."""
        if not isinstance(self.accuracy, (int, float)):
            return self.label
        return f"{self.accuracy:.1%} · {self.label.removesuffix(_accuracy_suffix(self.accuracy))}"


def _accuracy_suffix(accuracy: Any) -> str:
    return f" · test acc {accuracy:.1%}" if isinstance(accuracy, (int, float)) else ""


def model_choices(store: RunStore) -> list[ModelChoice]:
    """Usable models, the default first: the highest test accuracy among completed runs that
    learned and the shipped model; then the other completed runs, newest first; then stopped
    runs and runs that did not learn (they stay selectable, never the default). A run stopped
    before its first epoch ended is left out: its model is the untrained start."""
    choices = []
    for run in store.list():
        if run.status in ("completed", "stopped") and run.health() is None and usable(run):
            acc = run.summary.get("test_accuracy")
            learned = verdict(run) is None
            usable_default = run.status == "completed" and learned
            label = f"run {run.id}" + ("" if run.status == "completed" else f" ({run.status})")
            label += "" if learned else " (did not learn)"
            label += _accuracy_suffix(acc)
            choices.append(ModelChoice(label, run.id, run.model_path, run.dir, run.id, run.config, acc, usable_default))
    folder = default_model_dir()
    if (folder / "model.keras").is_file():
        acc = _read_json(folder / "evaluation.json").get("accuracy")
        label = "shipped default model" + _accuracy_suffix(acc)
        choices.append(ModelChoice(label, "default", folder / "model.keras", folder, None, _read_json(folder / "config.json"), acc))
    ranked = [c for c in choices if c.default_ok and isinstance(c.accuracy, (int, float))]
    best = max(ranked, key=lambda c: c.accuracy, default=None)
    rest = [c for c in choices if c is not best]
    # Stable sort: learned, completed models before the others, each group newest first (store order).
    rest.sort(key=lambda c: not c.default_ok)
    return ([best] if best else []) + rest


def resolve_model(store: RunStore, ref: str | None = None) -> ModelChoice:
    """The model a command names: a `.keras` file, a folder holding `model.keras` (e.g.
    artifacts/default), a run id or run folder; with no `ref`, the studio's default (the
    first of `model_choices`). A model file's settings come from the config.json beside it."""
    if ref is None:
        choices = model_choices(store)
        if not choices:
            raise RunError("No trained model yet: train one (python -m cifar_core train ...) or pass --model.")
        return choices[0]
    path = Path(ref)
    if ref.endswith(".keras") or (path.is_dir() and (path / "model.keras").is_file() and not _is_run_dir(store, path)):
        model_path = path if ref.endswith(".keras") else path / "model.keras"
        return ModelChoice(str(model_path), str(model_path), model_path, model_path.parent, None,
                           _read_json(model_path.parent / "config.json"), _read_json(model_path.parent / "evaluation.json").get("accuracy"))
    run = store.resolve(ref)
    return ModelChoice(f"run {run.id}", run.id, run.model_path, run.dir, run.id, run.config, run.summary.get("test_accuracy"))


def _is_run_dir(store: RunStore, path: Path) -> bool:
    try:
        return path.resolve().parent == store.runs_dir.resolve()
    except (OSError, RuntimeError):
        return False


def pick(choices: list[ModelChoice], key: str | None) -> ModelChoice | None:
    """The choice named by `key` (a run id or "default"), else the default (the first)."""
    return next((c for c in choices if c.key == key), choices[0] if choices else None)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = bounded_json.read(path)
    except (OSError, JSONError):
        return {}
    return data if isinstance(data, dict) else {}


def history(choice: ModelChoice, store: RunStore) -> pd.DataFrame:
    """Per-epoch metrics of the model's training: from the store for a run, else the folder's history.csv."""
    if choice.run_id:
        return store.metrics(choice.run_id, "epoch")
    try:
        return pd.read_csv(choice.folder / "history.csv")
    except (OSError, ValueError):
        return pd.DataFrame(columns=["phase", "epoch", "step", "ts"])
