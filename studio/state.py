"""What the pages share through the session and the URL: the active model and dataset, the run store,
and the Train form's values.

The sidebar (studio/sidebar.py) makes the picks; the pages read them here.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import streamlit as st

from cifar_core.base.errors import StudioError, readable
from cifar_core.config import TrainConfig
from cifar_core.data import imported as datasets
from cifar_core.data import locate
from cifar_core.data.classes import ClassesError
from cifar_core.data.loader import describe_source
from cifar_core.predict import split_predictions
from cifar_core.predict import calibration
from cifar_core.predict.calibration import CalibrationError
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore
from cifar_core.views import train_form
from studio.text import is_text, model_caption, plain, printable

ACTIVE_MODEL = "active_model"
# The pick is kept in the URL (?model=<run id>|default), so it survives reloads,
# page changes and bookmarks, and a new browser session gets the best model.
MODEL_PARAM = "model"
ACTIVE_DATA = "active_data"
# The active dataset is kept in the URL the same way (?data=<imported dataset>|<folder>); without one, the default:
# $CIFAR10_DIR, or for a model its own run's data folder while that exists (as before datasets could be picked).
DATA_PARAM = "data"
DEFAULT_DATA = "default"
STORE_ERROR = "store_error"
MAX_PARAM = 255  # characters of a ?data= or ?model= value: a file name's limit (and far above a run id or dataset name)


def store() -> RunStore:
    """The run store; when its index cannot be used (damaged, locked), say so and stop the page."""
    try:
        return RunStore()
    except RunError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


def store_or_error() -> RunStore | RunError:
    """The run store, or why its index cannot be used: for the sidebar, which says so and lets the page go on."""
    try:
        return RunStore()
    except RunError as err:
        return err


def dataset_options() -> dict[str, str | None]:
    """The datasets to pick from, key -> folder: the default ($CIFAR10_DIR), then every usable imported dataset by name."""
    return dataset_choices()[0]


def dataset_choices() -> tuple[dict[str, str | None], list[str]]:
    """The datasets to pick from (`dataset_options`), and a sentence for each damaged one, which is listed but
    never picked: one damaged dataset (a folder name that is not UTF-8 text) must not take a page down."""
    options: dict[str, str | None] = {DEFAULT_DATA: TrainConfig().resolved_data_dir()}
    try:
        listed = datasets.list_datasets()
    except (StudioError, OSError) as err:
        return options, [f"The imported datasets cannot be listed: {readable(err)}"]
    damaged = []
    for d in listed:
        if why := dataset_problem(d):
            damaged.append(f"Dataset {printable(d['name'])} is damaged and not offered: {why}")
        else:
            options[d["name"]] = d["path"]
    return options, damaged


def dataset_problem(listed: dict) -> str | None:
    """Why an imported dataset (a `list_datasets` entry) cannot be used, in words, or None."""
    if not is_text(listed["name"]):
        return "its folder's name is not UTF-8 text: rename it"
    return class_names_problem(listed["classes"])


def folder_problem(data_dir: str) -> str | None:
    """Why the dataset in `data_dir` (any layout) cannot be used by the pages, in words, or None."""
    status = describe_source(data_dir)
    return class_names_problem(status["class_names"]) if status["ok"] else None


def class_names_problem(names) -> str | None:
    """A class folder whose name is not UTF-8 text (Python reads its odd bytes as surrogates, which no page can
    send to the browser nor any cache key can hash), in words, or None."""
    if bad := next((name for name in names if not is_text(name)), None):
        return f"its class folder '{printable(bad)}' is not named in UTF-8 text: rename it, or import the images again"
    return None


def model_problem(choice: ModelChoice) -> str | None:
    """Why a model cannot be used, in words (its classes.json or calibration.json is damaged), or None."""
    if problem := choice.classes_problem:
        return problem
    try:
        calibration.read(choice.folder)
    except CalibrationError as err:
        return str(err)
    return None


def param_problem(value: str) -> str | None:
    """Why a value from the address (?data=, ?model=) is refused before anything looks it up, in words, or
    None: longer than a file name may be, or holding control characters (a NUL, a line break)."""
    if len(value) > MAX_PARAM:
        return f"is {len(value):,} characters long, more than the {MAX_PARAM} a name may have"
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in value):
        return "holds control characters"
    return None


def folder_in_place(value: str) -> bool:
    """Whether `value` (from the address) names a folder to use where it is: an absolute path of an existing
    folder, without '..' parts (the Data page's "Use it in place" writes one)."""
    return os.path.isabs(value) and ".." not in Path(value).parts and os.path.isdir(value)


def data_label(key: str) -> str:
    """A dataset key as the pickers show it (plain text: a selectbox does not read Markdown)."""
    return "CIFAR-10 (CIFAR10_DIR)" if key == DEFAULT_DATA else key


def active_data_key() -> str:
    """The key of the dataset picked in the sidebar (DEFAULT_DATA before any pick)."""
    return st.session_state.get(ACTIVE_DATA, (DEFAULT_DATA, None))[0]


def set_active_data(key: str) -> None:
    """Make `key` (an imported dataset's name or a folder) the active dataset from the next run on (call st.rerun)."""
    st.query_params[DATA_PARAM] = key


def active_data_dir(choice: ModelChoice | None = None) -> str | None:
    """The active dataset's folder, the one every page reads images from: the sidebar's pick; with the default,
    a model's own run's data folder while it exists (`choice`), else $CIFAR10_DIR."""
    key, folder = st.session_state.get(ACTIVE_DATA, (DEFAULT_DATA, None))
    if key != DEFAULT_DATA:
        return locate.resolve_data_dir(folder)
    return split_predictions.data_dir_for(choice) if choice is not None else TrainConfig().resolved_data_dir()


def active_model() -> ModelChoice | None:
    """The model picked in the sidebar (None when there is none)."""
    return st.session_state.get(ACTIVE_MODEL)


def require_model() -> ModelChoice:
    """The active model, captioned; without one, say how to get one and stop the page."""
    model = active_model()
    if model is None and (error := st.session_state.get(STORE_ERROR)):
        st.error(plain(error), icon=":material/error:")  # no model can be listed while the run index is unusable
        st.stop()
    if model is None:
        st.info("There is no trained model yet: train one on the Train page first.", icon=":material/model_training:")
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    st.caption(model_caption(model))
    try:
        _ = model.class_names  # read (and checked) here, so that a bad classes.json stops the page in words
        split_predictions.temperature(model)  # every probability shown uses it
    except (CalibrationError, ClassesError) as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()
    return model


def data_available(data_dir: str | None = None) -> bool:
    """Whether `data_dir` (default: the active dataset's folder) holds a dataset."""
    status = describe_source(data_dir or active_data_dir())
    return status["ok"] and class_names_problem(status["class_names"]) is None


def fill_train_form(config: dict, source: str) -> None:
    """Put a run's settings into the Train page's form (kept until another preset is picked)."""
    values = train_form.form_defaults(base=config)
    for f in train_form.form_fields():
        st.session_state[f"cfg_{f.name}"] = train_form.widget_value(f, values[f.name])
    preset = st.session_state.get("train_preset") or next(iter(train_form.PRESETS))
    st.session_state["train_preset"] = st.session_state["form_preset"] = preset
    st.session_state["form_source"] = source
