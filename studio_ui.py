"""Streamlit pieces shared by the dashboard's pages: the sidebar, cached resources, image galleries.

Everything here is presentation or caching; the logic lives in `cifar_core`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import streamlit as st

from cifar_core import CLASS_NAMES, model_choice, previews, test_predictions
from cifar_core.config import TrainConfig
from cifar_core.data import DataError, describe_source
from cifar_core.evaluate import Interpretation
from cifar_core.gradcam import GradCam, cam_layers, default_layer
from cifar_core.inference import Classifier
from cifar_core.model_choice import ModelChoice
from cifar_core.runs import RunError, RunStore

ACTIVE_MODEL = "active_model"
# The pick is kept in the URL (?model=<run id>|default), so it survives reloads,
# page changes and bookmarks, and a new browser session gets the best model.
MODEL_PARAM = "model"


def plain(text: object) -> str:
    """`text` made literal inside Markdown (st.markdown, st.error, st.caption...).

    File names, paths and error messages come from users and the files they
    bring: unescaped, `![x](http://host/)` in a file name would make every viewer's
    browser fetch that address, and links, colours, icons and LaTeX would render.
    Every ASCII punctuation mark is backslash-escaped (CommonMark reads each as
    itself), and line breaks and leading spaces go, so the text cannot open a
    block (heading, list, code) either.
    """
    return re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", " ".join(str(text).splitlines()).strip())


def store() -> RunStore:
    """The run store; when its index cannot be used (damaged, locked), say so and stop the page."""
    try:
        return RunStore()
    except RunError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


# ---------------------------------------------------------------- sidebar


def sidebar() -> ModelChoice | None:
    """Dataset status and the active-model picker; remembers the pick for the pages."""
    with st.sidebar:
        st.subheader("Dataset")
        status = describe_source(TrainConfig().resolved_data_dir())
        if status["ok"]:
            counts = ", ".join(f"{n:,} {split}" for split, n in status["counts"].items())
            st.success(f"CIFAR-10 found ({status['layout']} layout): {counts} images", icon=":material/dataset:")
            st.caption(plain(status["path"]))
        else:
            st.warning("No CIFAR-10 data found.", icon=":material/warning:")
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
                           format_func=lambda k: choices[keys.index(k)].label,
                           help="by default the model with the highest test accuracy (runs that did not learn are never the default)")
        if key != keys[0] or MODEL_PARAM in st.query_params:
            st.query_params[MODEL_PARAM] = key
        choice = choices[keys.index(key)]
        st.session_state[ACTIVE_MODEL] = choice
        return choice


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
    return model


def data_available() -> bool:
    return describe_source(TrainConfig().resolved_data_dir())["ok"]


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def _classifier(path: str, mtime: float) -> Classifier:
    return Classifier(path)


def classifier(choice: ModelChoice) -> Classifier:
    """The choice's loaded model, reused across reruns until its file changes."""
    return _classifier(str(choice.model_path), choice.model_path.stat().st_mtime)


@st.cache_resource(show_spinner=False, max_entries=6)
def _gradcam(path: str, mtime: float, layer: str) -> GradCam:
    return GradCam(_classifier(path, mtime).model, layer)


def gradcam_picker(choice: ModelChoice, key: str) -> GradCam:
    """A layer picker (the measured default first) and the choice's Grad-CAM for that layer."""
    model = classifier(choice).model
    layers, default = cam_layers(model), default_layer(model)
    layer = st.selectbox("Grad-CAM layer", layers, index=layers.index(default), key=key,
                         help=f"{default} by default: the deepest layer whose map is at least 8×8; deeper ones are "
                              "too coarse at 32×32 to point at anything (see the README's Grad-CAM check)")
    return _gradcam(str(choice.model_path), choice.model_path.stat().st_mtime, layer)


@st.cache_resource(show_spinner=False, max_entries=2)
def _test_set(data_dir: str, key: str, _progress=None) -> tuple[np.ndarray, np.ndarray]:
    return test_predictions.load_test_set(data_dir, progress=_progress)


def test_set(data_dir: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The test images and labels of `data_dir`, or None (with a message shown) when there are none.

    The first load decodes them with a progress bar; later ones come from the caches.
    """
    status = describe_source(data_dir)
    if not status["ok"]:
        st.info("Test images are not available: no CIFAR-10 data folder is set (see the sidebar).", icon=":material/image_not_supported:")
        return None
    bar = st.empty()

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Loading the images ({what}): {done:,}/{total:,}")

    try:
        return _test_set(data_dir, str(status["counts"]), progress)
    except DataError as err:
        st.error(f"The test images could not be loaded: {plain(err)}")
        return None
    finally:
        bar.empty()


def predictions(choice: ModelChoice, images: tuple[np.ndarray, np.ndarray]) -> Interpretation:
    """The model's test-set predictions: read from its folder, or computed once with a progress bar."""
    x, y = images
    memo_key = (str(choice.model_path), choice.model_path.stat().st_mtime, hash(y.tobytes()))
    memo = st.session_state.get("predictions_memo")
    if memo and memo[0] == memo_key:
        return memo[1]
    interp = test_predictions.matching_predictions(choice, y)
    if interp is None:
        bar = st.progress(0.0, text="Predicting the test set (once per model)…")
        interp = test_predictions.compute_predictions(choice, x, y, progress=lambda done, total, _: bar.progress(done / total, text=f"Predicting the test set: {done:,}/{total:,}"))
        bar.empty()
    st.session_state["predictions_memo"] = (memo_key, interp)
    return interp


# ---------------------------------------------------------------- galleries


def image_tile(image: np.ndarray, true: str, predicted: str, confidence: float) -> None:
    """One test image with its labels, green when right and red when wrong."""
    st.image(previews.upscale(image), width="stretch")
    verdict = f":green[**✓ {predicted}**]" if true == predicted else f":red[**✗ {predicted}**]"
    st.markdown(f"{verdict} {confidence:.0%}")
    st.caption(f"true: {true}")


def gallery(indices: np.ndarray, x: np.ndarray, interp: Interpretation, *, columns: int = 8, pick_key: str | None = None,
            overlays: np.ndarray | None = None) -> None:
    """A grid of test images (or their `overlays`, one per index); with `pick_key`, each has a
    button that stores its index in session state."""
    names = np.asarray(CLASS_NAMES)
    shown = x[indices] if overlays is None else overlays
    for start in range(0, len(indices), columns):
        cols = st.columns(columns)
        for col, i, image in zip(cols, indices[start:start + columns], shown[start:start + columns]):
            with col:
                image_tile(image, names[interp.y[i]], names[interp.preds[i]], float(interp.confidence[i]))
                if pick_key:
                    st.button(f"#{i}", key=f"{pick_key}-{i}", on_click=st.session_state.__setitem__, args=(pick_key, int(i)),
                              help="show all ten probabilities", width="stretch")


def model_caption(choice: ModelChoice) -> str:
    return f"Model: {choice.label} ({Path(choice.model_path).parent.name}/{Path(choice.model_path).name})"


# ---------------------------------------------------------------- the training form


def fill_train_form(config: dict, source: str) -> None:
    """Put a run's settings into the Train page's form (kept until another preset is picked)."""
    from cifar_core import train_form

    values = train_form.form_defaults(base=config)
    for f in train_form.form_fields():
        st.session_state[f"cfg_{f.name}"] = train_form.widget_value(f, values[f.name])
    preset = st.session_state.get("train_preset") or next(iter(train_form.PRESETS))
    st.session_state["train_preset"] = st.session_state["form_preset"] = preset
    st.session_state["form_source"] = source
