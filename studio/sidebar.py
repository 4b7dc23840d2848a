"""The sidebar every page shows: the active dataset's picker and status, and the active-model picker.

The picks are kept in the URL and the session (studio/state.py), where the pages read them.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from cifar_core.data import locate
from cifar_core.data.loader import describe_source
from cifar_core.runs import model_choice
from cifar_core.runs.model_choice import ModelChoice
from studio.state import ACTIVE_DATA, ACTIVE_MODEL, DATA_PARAM, DEFAULT_DATA, MODEL_PARAM, data_label, dataset_options, store
from studio.text import plain


def _model_picked() -> None:
    # The URL names the pick as soon as it is made: the next run reads the URL first, which otherwise still
    # names the previous pick and would put it back (a second pick in a row was undone).
    st.query_params[MODEL_PARAM] = st.session_state["model_pick"]


def sidebar() -> ModelChoice | None:
    """Dataset status and the active-model picker; remembers the pick for the pages."""
    with st.sidebar:
        st.subheader("Dataset")
        key, folder = _data_picker()
        status = describe_source(folder)
        if status["ok"]:
            counts = ", ".join(f"{n:,} {split}" for split, n in status["counts"].items())
            what = "CIFAR-10 found" if key == DEFAULT_DATA else f"{len(status['class_names'])} classes"
            st.success(f"{what} ({status['layout']} layout): {counts} images", icon=":material/dataset:")
            st.caption(plain(status["path"]))
        else:
            st.warning("No CIFAR-10 data found." if key == DEFAULT_DATA else "No dataset found there.", icon=":material/warning:")
            with st.expander("How to get the data"):
                st.text(status["message"])

        st.subheader("Active model")
        choices = model_choice.model_choices(store())
        if not choices:
            st.info("No trained model yet: train one on the Train page.", icon=":material/model_training:")
            st.session_state[ACTIVE_MODEL] = None
            return None
        keys = [c.key for c in choices]
        # A pick that no longer exists (a deleted run) falls back to the default, the best model.
        wanted = st.query_params.get(MODEL_PARAM) or st.session_state.get("model_pick")
        st.session_state["model_pick"] = wanted if wanted in keys else keys[0]
        key = st.selectbox("Model used by Classify, Predictions and Error analysis", keys, key="model_pick",
                           format_func=lambda k: choices[keys.index(k)].picker_label, on_change=_model_picked,
                           help="each with its test accuracy first; by default the model with the highest "
                                "(runs that did not learn are never the default)")
        if st.query_params.get(MODEL_PARAM) not in (None, *keys):
            # A mistyped or stale link (a deleted run). Said once: the URL names the model shown from here on.
            shown = wanted if len(wanted) <= 40 else wanted[:40] + "…"
            st.warning(f"Model {plain(shown)} not found; showing the {plain(choices[keys.index(key)].label)}.",
                       icon=":material/link_off:")
        if key != keys[0] or MODEL_PARAM in st.query_params:
            st.query_params[MODEL_PARAM] = key
        choice = choices[keys.index(key)]
        st.session_state[ACTIVE_MODEL] = choice
        return choice


def _data_picked() -> None:
    # The URL names the pick as soon as it is made: the next run reads the URL first (links and reloads).
    st.query_params[DATA_PARAM] = st.session_state["data_pick"]


def _data_picker() -> tuple[str, str | None]:
    """The active-dataset picker (in the sidebar): its key and folder, also kept for `active_data_dir`."""
    options = dataset_options()
    wanted = st.query_params.get(DATA_PARAM) or st.session_state.get("data_pick") or DEFAULT_DATA
    if wanted not in options and Path(locate.resolve_data_dir(wanted)).is_dir():
        options[wanted] = wanted  # a folder named in the URL (the Data page's "use it in place")
    st.session_state["data_pick"] = wanted if wanted in options else DEFAULT_DATA
    key = st.selectbox("Data used by Train, Predictions and Error analysis", list(options), key="data_pick",
                       format_func=data_label, on_change=_data_picked,
                       help="an imported dataset (Data page), a folder, or CIFAR-10 from CIFAR10_DIR")
    if wanted not in options:  # a mistyped or stale link (a deleted dataset)
        shown = wanted if len(wanted) <= 40 else wanted[:40] + "…"
        st.warning(f"Dataset {plain(shown)} not found; using the default.", icon=":material/link_off:")
    if key != DEFAULT_DATA or DATA_PARAM in st.query_params:
        st.query_params[DATA_PARAM] = key
    st.session_state[ACTIVE_DATA] = (key, options[key])
    return key, options[key]
