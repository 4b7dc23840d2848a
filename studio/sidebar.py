"""The sidebar every page shows: the active dataset's picker and status, and the active-model picker.

The picks are kept in the URL and the session (studio/state.py), where the pages read them. The model
follows the dataset: by default it is the best usable model for the active dataset, each model is labelled
with the dataset it fits, a model of another dataset offers to switch the dataset too, and switching the
dataset moves the model along to that dataset's default (unless the picked model fits it). Whatever the URL
or the files say, the sidebar draws: a refused address value, a damaged run index, run, model or dataset is a
message here, and every other one stays usable.
"""

from __future__ import annotations

import streamlit as st

from cifar_core.data import identity
from cifar_core.data.identity import DatasetRecord
from cifar_core.data.loader import describe_source
from cifar_core.runs import model_choice
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.runs.store import RunStore
from studio import state
from studio.state import (ACTIVE_DATA, ACTIVE_MODEL, ACTIVE_RECORD, DATA_PARAM, DEFAULT_DATA, MODEL_COUNT, MODEL_PARAM,
                          STORE_ERROR, data_label)
from studio.text import plain, printable

# How the active model fits the active dataset, in the caption under the picker.
FITS = {identity.SAME: ", the active dataset", identity.COPY: ", a copy of the active dataset (the same classes in "
        "the same order)", identity.PART: f", {identity.PART} of the active dataset"}
PICKED_ON = "model_picked_on"  # the dataset key that was active when the model pick was last shown


def _model_picked() -> None:
    # The URL names the pick as soon as it is made: the next run reads the URL first, which otherwise still
    # names the previous pick and would put it back (a second pick in a row was undone).
    st.query_params[MODEL_PARAM] = st.session_state["model_pick"]


def sidebar() -> ModelChoice | None:
    """Dataset status and the active-model picker; remembers the picks for the pages."""
    with st.sidebar:
        st.subheader("Dataset")
        key, folder = _data_picker()
        status = describe_source(folder)
        if status["ok"] and (problem := state.class_names_problem(status["class_names"])):
            st.error(f"This dataset cannot be used: {plain(problem)}", icon=":material/error:")
        elif status["ok"]:
            counts = ", ".join(f"{n:,} {split}" for split, n in status["counts"].items())
            what = "CIFAR-10 found" if key == DEFAULT_DATA else f"{len(status['class_names'])} classes"
            st.success(f"{what} ({status['layout']} layout): {counts} images", icon=":material/dataset:")
            st.caption(plain(status["path"]))
        else:
            st.warning("No CIFAR-10 data found." if key == DEFAULT_DATA else "No dataset found there.", icon=":material/warning:")
            with st.expander("How to get the data"):
                st.text(printable(status["message"]))
        record = st.session_state[ACTIVE_RECORD] = state.pick_record(key, folder, status["ok"])

        st.subheader("Active model")
        store = state.store_or_error()
        st.session_state[STORE_ERROR] = str(store) if not isinstance(store, RunStore) else None
        if not isinstance(store, RunStore):  # the pages that need runs say so too; the others go on
            st.error(plain(store), icon=":material/error:")
            st.session_state[ACTIVE_MODEL] = None
            return None
        choices = model_choice.model_choices(store, record)
        _damaged_runs(store)
        st.session_state[MODEL_COUNT] = len(choices)
        if not choices:
            st.info("No trained model yet: train one on the Train page.", icon=":material/model_training:")
            st.session_state[ACTIVE_MODEL] = None
            return None
        choice = _model_picker(choices, record, key)
        st.session_state[ACTIVE_MODEL] = choice
        return choice


def _model_picker(choices: list[ModelChoice], record: DatasetRecord, data_key: str) -> ModelChoice | None:
    """The model picker: the URL's or the session's pick while it exists (and, after a dataset change, fits the
    new dataset), else the default for the dataset; None, with a way to train one, when no model fits it. A
    damaged model is listed, marked so, and is never the default."""
    problems = {c.key: state.model_problem(c) for c in choices}
    keys = [c.key for c in choices]
    # A damaged model is never the default while a usable one fits: the best completed one, else a stopped one
    # that learned; with neither, the first damaged one is shown, so that its pages say what is wrong with it
    # rather than only that no model fits.
    healthy = [c for c in choices if not problems[c.key]]
    default = (model_choice.default_choice(healthy) or next((c for c in healthy if c.matches and c.learned), None)
               or next((c for c in choices if problems[c.key]), None))
    asked = st.query_params.get(MODEL_PARAM)
    refused = state.param_problem(asked) if asked else None
    linked = None if refused else asked
    wanted = linked or st.session_state.get("model_pick")
    picked = next((c for c in choices if c.key == wanted), None)
    moved = st.session_state.get(PICKED_ON, data_key) != data_key
    if picked is not None and moved and not picked.matches:
        picked = None  # the dataset changed and the model does not fit it: the new dataset's default instead
        st.query_params.pop(MODEL_PARAM, None)
        linked = None
    st.session_state[PICKED_ON] = data_key
    st.session_state["model_pick"] = picked.key if picked else default.key if default else None
    key = st.selectbox("Model used by Classify, Predictions and Error analysis", keys, key="model_pick",
                       format_func=lambda k: choices[keys.index(k)].picker_label + (" · damaged" if problems[k] else ""),
                       on_change=_model_picked, placeholder=f"No model for {record.name} yet",
                       help="each with its test accuracy and the dataset it learned; by default the most accurate one "
                            "for the active dataset (runs that did not learn are never the default, nor a damaged model)")
    if refused or linked not in (None, *keys):
        # A mistyped or stale link (a deleted run). Said once: the URL names the model shown from here on.
        now = f"the {choices[keys.index(key)].label}" if key else "no model"
        said = f"The model named in the address {refused}" if refused else f"Model {plain(_short(linked))} not found"
        st.warning(f"{said}; showing {plain(now)}.", icon=":material/link_off:")
    if damaged := sum(1 for p in problems.values() if p):
        st.caption(f"{damaged} model(s) marked damaged: a page using one says why.")
    if key is None:
        st.info(f"No usable model fits the dataset {plain(record.describe())} yet: train one, or pick a model of "
                "another dataset above.", icon=":material/model_training:")
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.query_params.pop(MODEL_PARAM, None)
        return None
    if key != (default.key if default else None) or MODEL_PARAM in st.query_params:
        st.query_params[MODEL_PARAM] = key
    choice = choices[keys.index(key)]
    st.caption(plain(f"{choice.name} · learned {choice.dataset_name}" + FITS.get(choice.fit, "")))
    if not choice.matches:
        st.warning(plain(f"This model learned {choice.dataset_name}, not the active dataset {record.name}."),
                   icon=":material/dataset:")
        state.offer_switch(choice, record, key="sidebar")
    return choice


def _damaged_runs(store: RunStore) -> None:
    """A line naming the runs whose row or files are damaged (the Runs page lists why)."""
    broken = [r.id for r in store.list() if r.status not in ("queued", "running") and r.health()]
    if broken:
        st.caption(f"Damaged run(s), not offered: {plain(', '.join(_short(b) for b in broken[:5]))}"
                   + (f" and {len(broken) - 5} more" if len(broken) > 5 else "") + " (see Runs).")


def _data_picked() -> None:
    # The URL names the pick as soon as it is made: the next run reads the URL first (links and reloads).
    st.query_params[DATA_PARAM] = st.session_state["data_pick"]


def _data_picker() -> tuple[str, str | None]:
    """The active-dataset picker (in the sidebar): its key and folder, also kept for `active_data_dir`."""
    options, damaged = state.dataset_choices()
    asked = st.query_params.get(DATA_PARAM)
    refused = state.param_problem(asked) if asked else None
    wanted = (None if refused else asked) or st.session_state.get("data_pick") or DEFAULT_DATA
    if wanted not in options and state.folder_in_place(wanted):
        options[wanted] = wanted  # a folder named in the URL (the Data page's "use it in place")
    st.session_state["data_pick"] = wanted if wanted in options else DEFAULT_DATA
    key = st.selectbox("Data used by Train, Predictions and Error analysis", list(options), key="data_pick",
                       format_func=data_label, on_change=_data_picked,
                       help="an imported dataset (Data page), a folder, or CIFAR-10 from CIFAR10_DIR; the model "
                            "moves along to the new dataset's default unless it fits it")
    if refused:
        st.warning(f"The dataset named in the address {refused}; using the default.", icon=":material/link_off:")
    elif wanted not in options:  # a mistyped or stale link (a deleted or damaged dataset)
        st.warning(f"Dataset {plain(_short(wanted))} not found; using the default.", icon=":material/link_off:")
    for line in damaged:
        st.warning(plain(line), icon=":material/warning:")
    if key != DEFAULT_DATA or DATA_PARAM in st.query_params:
        st.query_params[DATA_PARAM] = key
    st.session_state[ACTIVE_DATA] = (key, options[key])
    return key, options[key]


def _short(text: str) -> str:
    """A name from the address or a folder, cut for a one-line message."""
    return text if len(text) <= 40 else text[:40] + "…"
