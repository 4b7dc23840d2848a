"""The dashboard's training form: its sections, presets, and how its boxes become a TrainConfig.

The form is generated from TrainConfig's field descriptions (`config.setting`);
this module only adds what is specific to a form: starting points (the presets
of `cifar_core.training.presets`, shared with `train --preset`), how each value is written
in a box, the dashboard's check before a run starts (a data folder is required; the rest is
`training.data_check`'s, shared with `train`), the models a run can take its base from, and
where uploaded weights are kept.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from cifar_core.config import ConfigError, TrainConfig, field_kind, parse_config
from cifar_core.data.loader import dataset_classes, describe_source
from cifar_core.runs.model_choice import model_choices
from cifar_core.base.paths import artifacts_dir
from cifar_core.training.data_check import check_training_data
# PRESETS: the form's "Start from" choices, by key (each with a display name and help text).
from cifar_core.training.presets import PRESETS as PRESETS, preset_settings
from cifar_core.runs.store import RunStore


def form_fields() -> list[dataclasses.Field]:
    """TrainConfig's fields in the form's order (sections as declared)."""
    return list(dataclasses.fields(TrainConfig))


def sections() -> dict[str, list[dataclasses.Field]]:
    """The form's sections, in declaration order, each with its fields."""
    out: dict[str, list[dataclasses.Field]] = {}
    for f in form_fields():
        out.setdefault(f.metadata["section"], []).append(f)
    return out


def form_defaults(preset: str | None = None, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Form values: a run's settings (`base`), else TrainConfig's defaults with a preset's changes (`preset`: its key);
    the data folder is the one currently in use unless `base` names one."""
    if base is not None:
        names = {f.name for f in form_fields()}
        values = {**TrainConfig().to_dict(), **{k: v for k, v in base.items() if k in names}}
    else:
        values = dataclasses.replace(TrainConfig(), **preset_settings(preset) if preset else {}).to_dict()
    values["data_dir"] = values.get("data_dir") or TrainConfig().resolved_data_dir() or ""
    return values


def widget_value(f: dataclasses.Field, value: Any) -> Any:
    """A value as its form widget holds it: choices and toggles typed, everything else as text.

    Numbers are text boxes, not number inputs, so that a typo is reported instead of
    being turned into 0.
    """
    if f.metadata["choices"] or field_kind(f) == "bool":
        return value
    return form_text(value)


def form_text(value: Any) -> str:
    """How a setting is written in the form's text boxes (the inverse of `config_from_form`)."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def config_from_form(values: dict[str, Any]) -> "TrainConfig":
    """A validated TrainConfig from the form's values; ConfigError names each bad field, in words."""
    return parse_config(values)


def check_data(config: TrainConfig) -> TrainConfig:
    """The config to start (`check_training_data`: its classes spelled as the data folder spells them);
    ConfigError when its data folder (or dataset name) cannot be used from the dashboard, or fails the
    pre-training check that `train` makes too.

    The dashboard never falls back to Keras' download (it needs internet), so a folder is required.
    """
    source = describe_source(config.resolved_data_dir())
    if not source["ok"]:
        raise ConfigError({"data_dir": source["message"]})
    return check_training_data(config)


def data_class_names(data_dir: str | None) -> tuple[str, ...]:
    """The class names of the form's data folder (none when it holds no dataset), for the form's hint."""
    folder = data_dir or TrainConfig().resolved_data_dir()
    return (dataset_classes(folder) or ()) if folder else ()


def base_model_choices(store: RunStore) -> dict[str, str]:
    """Trained models whose base a new run can start from (transfer learning): {label: model path}."""
    return {f"{c.label} · {c.config.get('arch', '?')} width {c.config.get('width', '?')} · "
            + (f"{len(c.class_names)} classes" if c.classes_problem is None else "unusable classes.json"): str(c.model_path)
            for c in model_choices(store)}


def save_uploaded_weights(name: str, data: bytes) -> Path:
    """Keep an uploaded base-weights file under artifacts/uploads/ and return its path."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name).name) or "weights.h5"
    folder = artifacts_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    path.write_bytes(data)
    return path
