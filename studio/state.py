"""What the pages share through the session and the URL: the active model and dataset, the run store,
and the Train form's values.

The sidebar (studio/sidebar.py) makes the picks; the pages read them here.
"""

from __future__ import annotations

import streamlit as st

from cifar_core.config import TrainConfig
from cifar_core.data import imported as datasets
from cifar_core.data import locate
from cifar_core.data.classes import ClassesError
from cifar_core.data.loader import describe_source
from cifar_core.predict import split_predictions
from cifar_core.predict.calibration import CalibrationError
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore
from cifar_core.views import train_form
from studio.text import model_caption, plain

ACTIVE_MODEL = "active_model"
# The pick is kept in the URL (?model=<run id>|default), so it survives reloads,
# page changes and bookmarks, and a new browser session gets the best model.
MODEL_PARAM = "model"
ACTIVE_DATA = "active_data"
# The active dataset is kept in the URL the same way (?data=<imported dataset>|<folder>); without one, the default:
# $CIFAR10_DIR, or for a model its own run's data folder while that exists (as before datasets could be picked).
DATA_PARAM = "data"
DEFAULT_DATA = "default"


def store() -> RunStore:
    """The run store; when its index cannot be used (damaged, locked), say so and stop the page."""
    try:
        return RunStore()
    except RunError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


def dataset_options() -> dict[str, str | None]:
    """The datasets to pick from, key -> folder: the default ($CIFAR10_DIR), then every imported dataset by name."""
    options = {DEFAULT_DATA: TrainConfig().resolved_data_dir()}
    options.update({d["name"]: d["path"] for d in datasets.list_datasets()})
    return options


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
    return describe_source(data_dir or active_data_dir())["ok"]


def fill_train_form(config: dict, source: str) -> None:
    """Put a run's settings into the Train page's form (kept until another preset is picked)."""
    values = train_form.form_defaults(base=config)
    for f in train_form.form_fields():
        st.session_state[f"cfg_{f.name}"] = train_form.widget_value(f, values[f.name])
    preset = st.session_state.get("train_preset") or next(iter(train_form.PRESETS))
    st.session_state["train_preset"] = st.session_state["form_preset"] = preset
    st.session_state["form_source"] = source
