"""Which trained models the studio can use, which dataset each one fits, and which one it uses by default.

Every model keeps the record of the dataset it learned from (data/identity.py). The default model is the
best usable model *for the active dataset*: among the models that learned that dataset (the same
fingerprint) or a copy of it (the same class names in the same order), the most accurate completed run
that learned, or the shipped model; failing those, the best one that learned some of its classes. Test
accuracies are compared only there, on one test set: a model of another dataset is listed, labelled with
its dataset, and never the default.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from cifar_core.base import bounded_json
from cifar_core.base.paths import default_model_dir
from cifar_core.data import identity, locate
from cifar_core.data.classes import ClassesError, model_class_names
from cifar_core.data.identity import DatasetRecord, RecordError
from cifar_core.data.loader import dataset_classes
from cifar_core.model import bundle_open
from cifar_core.runs.outcome import usable, verdict
from cifar_core.base.bounded_json import JSONError
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

MATCHES = (identity.SAME, identity.COPY, identity.PART)
DAMAGED = "dataset record damaged"


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
    dataset: DatasetRecord | None = None  # the dataset it learned from; None when its record is damaged
    dataset_problem: str | None = None  # why its record cannot be read, in words
    fit: str | None = None  # how it fits the dataset it was listed for (identity.SAME ... OTHER); None: listed for none
    learned: bool = True  # False for a run whose validation accuracy stayed at chance (runs.outcome.verdict)

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
    def dataset_name(self) -> str:
        return self.dataset.name if self.dataset is not None else DAMAGED

    @property
    def matches(self) -> bool:
        """Whether it fits the dataset it was listed for (always, when listed for none)."""
        return self.fit is None or self.fit in MATCHES

    @property
    def name(self) -> str:
        """The label without its accuracy ("run 20261207-…", "shipped default model"): how a sentence names it."""
        return self.label.removesuffix(_accuracy_suffix(self.accuracy))

    @property
    def picker_label(self) -> str:
        """The test accuracy, the dataset it learned and its name ("88.8% · cifar10 · shipped default model"): a
        narrow picker cuts the end of a long label (a run's id), and the accuracy and its dataset (on whose test
        images it was measured) are what tell the models apart."""
        accuracy = f"{self.accuracy:.1%} · " if isinstance(self.accuracy, (int, float)) else ""
        return f"{accuracy}{self.dataset_name} · {self.name}"


def _accuracy_suffix(accuracy: Any) -> str:
    return f" · test acc {accuracy:.1%}" if isinstance(accuracy, (int, float)) else ""


def _with_record(choice: ModelChoice) -> ModelChoice:
    """`choice` with the dataset record read from its folder (a damaged record: the problem instead)."""
    try:
        return dataclasses.replace(choice, dataset=identity.read_record(choice.folder, choice.config))
    except RecordError as err:
        return dataclasses.replace(choice, dataset_problem=str(err), default_ok=False)


def _listed(store: RunStore) -> list[ModelChoice]:
    """Every usable model, newest run first, the shipped model last, each with its dataset record. A run
    stopped before its first epoch ended is left out: its model is the untrained start."""
    choices = []
    for run in store.list():
        if run.status in ("completed", "stopped") and run.health() is None and usable(run):
            acc = run.summary.get("test_accuracy")
            learned = verdict(run) is None
            label = f"run {run.id}" + ("" if run.status == "completed" else f" ({run.status})")
            label += "" if learned else " (did not learn)"
            label += _accuracy_suffix(acc)
            choices.append(ModelChoice(label, run.id, run.model_path, run.dir, run.id, run.config, acc,
                                       run.status == "completed" and learned, learned=learned))
    folder = default_model_dir()
    if (folder / "model.keras").is_file():
        acc = _read_json(folder / "evaluation.json").get("accuracy")
        choices.append(ModelChoice("shipped default model" + _accuracy_suffix(acc), "default", folder / "model.keras",
                                   folder, None, _read_json(folder / "config.json"), acc))
    return [_with_record(c) for c in choices]


def _best(choices: list[ModelChoice]) -> ModelChoice | None:
    """The most accurate of the choices that may be the default (one without an accuracy only when alone)."""
    ok = [c for c in choices if c.default_ok]
    return max(ok, key=lambda c: (isinstance(c.accuracy, (int, float)), c.accuracy or 0.0), default=None)


def model_choices(store: RunStore, dataset: DatasetRecord | None = None) -> list[ModelChoice]:
    """Usable models, the default for `dataset` first (see the module's description), then the others that fit
    it, then those of other datasets, then those whose record is damaged; within each group completed runs
    that learned come first, newest first. Each choice says how it fits `dataset` (`fit`).

    Without `dataset` (a listing for no dataset, e.g. the bases offered for transfer) nothing is compared across
    datasets by fit: the most accurate model that learned comes first, then the others in the same order."""
    choices = _listed(store)
    if dataset is None:
        best = _best([c for c in choices if c.dataset is not None])
        return ([best] if best else []) + _grouped(c for c in choices if c is not best)
    fitted = [dataclasses.replace(c, fit=identity.fit(c.dataset, dataset) if c.dataset else identity.OTHER)
              for c in choices]
    full = [c for c in fitted if c.fit in (identity.SAME, identity.COPY)]
    part = [c for c in fitted if c.fit == identity.PART]
    best = _best(full) or _best(part)
    matching = _grouped(c for c in full + part if c is not best)
    others = _grouped(c for c in fitted if not c.matches)
    return ([best] if best else []) + matching + others


def _grouped(choices) -> list[ModelChoice]:
    # Stable sort: learned, completed models before the others, each group in store order (newest first); damaged last.
    return sorted(choices, key=lambda c: (c.dataset is None, not c.default_ok))


def default_choice(choices: list[ModelChoice]) -> ModelChoice | None:
    """The default of `model_choices`' list: its first model when that may be the default and fits the dataset
    the list was made for; None when no usable model fits it."""
    first = choices[0] if choices else None
    return first if first is not None and first.default_ok and first.matches else None


def pick(choices: list[ModelChoice], key: str | None) -> ModelChoice | None:
    """The choice named by `key` (a run id or "default"), else the default (None when there is none)."""
    return next((c for c in choices if c.key == key), None) or default_choice(choices)


def shipped_record() -> DatasetRecord | None:
    """The dataset the shipped model learned from, or None without a usable shipped model."""
    folder = default_model_dir()
    if not (folder / "model.keras").is_file():
        return None
    try:
        return identity.read_record(folder, _read_json(folder / "config.json"))
    except RecordError:
        return None


def dataset_of(data_dir: str | None) -> DatasetRecord:
    """The record of the dataset in use: the dataset in `data_dir` (its name, its class list, its fingerprint);
    without a folder, the shipped model's dataset (else Keras' CIFAR-10 download). A folder that holds no
    dataset has no classes, so no model fits it."""
    if data_dir:
        classes = dataset_classes(data_dir) or ()
        return DatasetRecord(identity.dataset_name(data_dir), tuple(classes),
                             identity.fingerprint(data_dir) if classes else None)
    return shipped_record() or identity.record_for(None, dataset_classes(None) or ())


def default_data_dir() -> str | None:
    """The data folder used when none is given: $CIFAR10_DIR, else the shipped model's own folder when it is on
    this machine (resolved against the checkout), else None (Keras' download)."""
    if os.environ.get("CIFAR10_DIR"):
        return locate.data_dir(None)
    return identity.stored_folder(_read_json(default_model_dir() / "config.json").get("data_dir"))


def no_model_message(dataset: DatasetRecord, data_dir: str | None) -> str:
    """Why there is no default model for `dataset`, and what to do, in words (for the CLI)."""
    where = f" --data-dir {data_dir}" if data_dir else ""
    return (f"No usable model fits the dataset {dataset.describe()}: none learned it or a copy of it (the same class "
            f"names in the same order). Train one (python -m cifar_core train{where}) or pass --model RUN_OR_PATH "
            "(python -m cifar_core runs lists the runs).")


def resolve_model(store: RunStore, ref: str | None = None, dataset: DatasetRecord | None = None) -> ModelChoice:
    """The model a command names: a `.keras` file, a folder holding `model.keras` (e.g. artifacts/default, or an
    unzipped bundle), a bundle `.zip`, a run id or run folder; with no `ref`, the default for `dataset` (default:
    the dataset of $CIFAR10_DIR, else the shipped model's), and RunError naming the dataset when no model fits
    it. A model file's settings come from the config.json beside it."""
    if ref is None:
        dataset = dataset or dataset_of(locate.data_dir(None))
        choices = model_choices(store, dataset)
        if not choices:
            raise RunError("No trained model yet: train one (python -m cifar_core train ...) or pass --model.")
        if (choice := default_choice(choices)) is None:
            raise RunError(no_model_message(dataset, None))
        return choice
    if bundle_open.is_bundle_zip(ref):
        return bundle_choice(ref)
    path = Path(ref)
    if ref.endswith(".keras") or (path.is_dir() and (path / "model.keras").is_file() and not _is_run_dir(store, path)):
        model_path = path if ref.endswith(".keras") else path / "model.keras"
        return _with_record(ModelChoice(str(model_path), str(model_path), model_path, model_path.parent, None,
                                        _read_json(model_path.parent / "config.json"),
                                        _read_json(model_path.parent / "evaluation.json").get("accuracy")))
    run = store.resolve(ref)
    return _with_record(ModelChoice(f"run {run.id}", run.id, run.model_path, run.dir, run.id, run.config,
                                    run.summary.get("test_accuracy")))


def bundle_choice(bundle: str | Path | bytes, label: str | None = None) -> ModelChoice:
    """A downloaded bundle (a .zip's path, or its bytes) as a model to use: unpacked safely (`bundle_open`), then
    read as a model folder with its names, temperature and threshold. BundleError, in words, for what is not one."""
    folder = bundle_open.open_bundle_bytes(bundle) if isinstance(bundle, bytes) else bundle_open.open_bundle(bundle)
    model_path = folder / bundle_open.MODEL_FILE
    label = label or ("uploaded bundle" if isinstance(bundle, bytes) else f"bundle {Path(bundle).name}")
    return _with_record(ModelChoice(label, f"bundle:{folder.name}", model_path, folder, None,
                                    _read_json(folder / "config.json"), _read_json(folder / "evaluation.json").get("accuracy")))


def _is_run_dir(store: RunStore, path: Path) -> bool:
    try:
        return path.resolve().parent == store.runs_dir.resolve()
    except (OSError, RuntimeError):
        return False


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = bounded_json.read(path)
    except (OSError, JSONError):  # missing or damaged: the model is listed without it
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
