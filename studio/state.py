"""What the pages share through the session and the URL: the active model and dataset (and the record of
the dataset, which the model must fit), the run store, and the Train form's values.

The sidebar (studio/sidebar.py) makes the picks; the pages read them here.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import streamlit as st

from cifar_core.base.paths import default_model_dir
from cifar_core.base.errors import StudioError, readable
from cifar_core.config import TrainConfig
from cifar_core.data import imported as datasets
from cifar_core.data import locate
from cifar_core.data.classes import ClassesError
from cifar_core.data import identity
from cifar_core.data.identity import DatasetRecord
from cifar_core.data.loader import describe_source
from cifar_core.predict import split_predictions
from cifar_core.predict import calibration
from cifar_core.predict.calibration import CalibrationError
from cifar_core.runs import model_choice
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore
from cifar_core.views import train_form
from studio.text import is_text, model_caption, plain, printable

ACTIVE_MODEL = "active_model"
MODEL_COUNT = "model_count"  # how many models the sidebar listed: "none fits this dataset" is not "none at all"
# The pick is kept in the URL (?model=<run id>|default), so it survives reloads,
# page changes and bookmarks, and a new browser session gets the best model.
MODEL_PARAM = "model"
ACTIVE_DATA = "active_data"
# The active dataset is kept in the URL the same way (?data=<imported dataset>|<folder>); without one, the default:
# $CIFAR10_DIR, or for a model its own run's data folder while that exists (as before datasets could be picked).
DATA_PARAM = "data"
ACTIVE_RECORD = "active_record"  # the active dataset's DatasetRecord, as the sidebar found it this run
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
    blocking = [p["message"] for p in listed.get("problems", ()) if p["blocking"]]
    return " ".join(blocking) if blocking else class_names_problem(listed["classes"])


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
    $CIFAR10_DIR, else (none set) a model's own data folder while it is on this machine (`choice`)."""
    key, folder = st.session_state.get(ACTIVE_DATA, (DEFAULT_DATA, None))
    if key != DEFAULT_DATA:
        return locate.resolve_data_dir(folder)
    return split_predictions.data_dir_for(choice) if choice is not None else TrainConfig().resolved_data_dir()


@st.cache_data(show_spinner=False, max_entries=64)
def _dataset_record(folder: str | None, signature: tuple) -> DatasetRecord:
    # `signature` (the folders' modification times) is the key: an image added or removed is a new dataset.
    return model_choice.dataset_of(folder)


def dataset_record(folder: str | None) -> DatasetRecord:
    """The record of the dataset in `folder` (name, classes, fingerprint); without a folder, the shipped model's
    dataset. The fingerprint is computed once per folder state (seconds for CIFAR-10, then cached)."""
    if folder:
        return _dataset_record(folder, identity.folder_signature(folder))
    shipped = default_model_dir() / identity.RECORD_FILE
    return _dataset_record(None, (str(shipped), shipped.stat().st_mtime_ns if shipped.is_file() else None))


def pick_record(key: str, folder: str | None, available: bool) -> DatasetRecord:
    """The record of the dataset picked as `key` (its `folder`, `available` when it holds a dataset). The default
    (CIFAR10_DIR) without a dataset there is the shipped model's: CIFAR-10, which Classify can still use."""
    if key == DEFAULT_DATA and not available:
        return dataset_record(None)
    return dataset_record(locate.resolve_data_dir(folder) if folder else None)


def active_dataset() -> DatasetRecord:
    """The record of the dataset picked in the sidebar (kept by it for this run): what the default model is for."""
    record = st.session_state.get(ACTIVE_RECORD)
    if record is None:
        key, folder = st.session_state.get(ACTIVE_DATA, (DEFAULT_DATA, None))
        record = pick_record(key, folder, bool(folder) and data_available(folder))
    return record


def active_model() -> ModelChoice | None:
    """The model picked in the sidebar (None when there is none)."""
    return st.session_state.get(ACTIVE_MODEL)


def require_model(fits_data: bool = False) -> ModelChoice:
    """The active model, captioned; without one, say how to get one and stop the page. With `fits_data` (a page
    that scores the active dataset's test images), a model of other classes is a statement in words with the
    ways out (switch the dataset to the model's, or the model to the dataset's default), and the page stops."""
    model = active_model()
    if model is None and (error := st.session_state.get(STORE_ERROR)):
        st.error(plain(error), icon=":material/error:")  # no model can be listed while the run index is unusable
        st.stop()
    if model is None:
        if st.session_state.get(MODEL_COUNT):
            st.info(f"No usable model fits the dataset {plain(active_dataset().describe())} yet: train one on the Train "
                    "page, or pick a model of another dataset in the sidebar.", icon=":material/model_training:")
        else:
            st.info("There is no trained model yet: train one on the Train page first.", icon=":material/model_training:")
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    st.caption(model_caption(model) + f" · learned {plain(model.dataset_name)}")
    try:
        _ = model.class_names  # read (and checked) here, so that a bad classes.json stops the page in words
        split_predictions.temperature(model)  # every probability shown uses it
        if model.dataset_problem:
            raise identity.RecordError(model.dataset_problem)
    except (CalibrationError, ClassesError, identity.RecordError) as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()
    dataset = active_dataset()
    if fits_data and dataset.class_names and not identity.readable(model.class_names, dataset):
        st.warning(plain(mismatch(model, dataset)), icon=":material/dataset:")
        offer_switch(model, dataset, key="page")
        st.stop()
    return model


def mismatch(model: ModelChoice, dataset: DatasetRecord) -> str:
    """In words: the model learned another dataset than the active one, so it cannot score its images."""
    missing = [c for c in model.class_names if c not in dataset.class_names]
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (f"The {model.name} learned {model.dataset_name}; the active dataset is {dataset.name}, which has no "
            f"{shown} images, so this model cannot be checked on its test images.")


def offer_switch(model: ModelChoice, dataset: DatasetRecord, key: str) -> None:
    """Buttons out of a model that does not fit the active dataset: switch the dataset to the model's (when
    that dataset is here), or the model to the active dataset's default (when it has one)."""
    own = dataset_key_for(model)
    if own is not None and st.button(f"Switch the dataset to {data_label(own)}", key=f"switch_data_{key}",
                                     icon=":material/dataset:", help="the dataset this model learned from"):
        use_model(model.key, own)
    default = model_choice.default_choice(model_choice.model_choices(store(), dataset))
    if default is not None and st.button(f"Use {dataset.name}'s default model", key=f"switch_model_{key}",
                                         icon=":material/swap_horiz:", help=default.picker_label):
        use_model(default.key, active_data_key())
    if own is None and default is None:
        st.caption(f"{model.dataset_name} is not among the datasets here (Data page), and no model fits {dataset.name} "
                   "yet (Train page).")


def use_model(model_key: str, data_key: str) -> None:
    """Make a model and a dataset active together (the URL names both) and redraw the page."""
    st.query_params[MODEL_PARAM] = model_key
    st.query_params[DATA_PARAM] = data_key  # the sidebar reads the URL before its widgets' last values
    st.rerun()


def data_key_for(folder: str | None) -> str:
    """The sidebar's key of the dataset in `folder`: an imported dataset's name, the default (CIFAR10_DIR), or the
    folder itself; the default without a folder (Keras' download, or CIFAR10_DIR then)."""
    if not folder:
        return DEFAULT_DATA
    target = Path(locate.resolve_data_dir(folder)).resolve()
    for key, option in dataset_options().items():
        if option and Path(option).resolve() == target:
            return key
    return str(target)


def dataset_key_for(model: ModelChoice) -> str | None:
    """The key of a dataset here that the model fits (the one it learned from, else a copy of it), or None."""
    if model.dataset is None:
        return None
    candidates = dict(dataset_options())
    if own := identity.stored_folder(model.config.get("data_dir")):
        candidates.setdefault(data_key_for(own), own)
    fits = {key: identity.fit(model.dataset, dataset_record(folder)) for key, folder in candidates.items() if folder}
    for wanted in model_choice.MATCHES:
        if found := next((key for key, how in fits.items() if how == wanted), None):
            return found
    return None


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
