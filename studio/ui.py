"""Streamlit pieces shared by the dashboard's pages: the sidebar, cached resources, image galleries.

Everything here is presentation or caching; the logic lives in `cifar_core`.
Why one module of ~600 lines: Streamlit caches are keyed by the function that
defines them, so the caches the pages share are defined once, here, with the
galleries and dialogs that read them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from cifar_core.data import imported as datasets
from cifar_core.data import locate
from cifar_core.analysis import duplicates
from cifar_core.analysis import embeddings
from cifar_core.explain import check as explain
from cifar_core.analysis import label_issues
from cifar_core.runs import model_choice
from cifar_core.views import plots
from cifar_core.views import previews
from cifar_core.analysis import similar
from cifar_core.predict import split_predictions
from cifar_core.predict import calibration
from cifar_core.predict.calibration import CalibrationError
from cifar_core.data.classes import ClassesError
from cifar_core.config import TrainConfig
from cifar_core.data.images import DataError
from cifar_core.data.loader import describe_source
from cifar_core.predict.evaluate import Interpretation
from cifar_core.explain.base import Explainer
from cifar_core.explain.faithfulness import check_images, check_sentence
from cifar_core.predict.inference import Classifier
from cifar_core.base.markup import markdown_literal
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

ACTIVE_MODEL = "active_model"
# The pick is kept in the URL (?model=<run id>|default), so it survives reloads,
# page changes and bookmarks, and a new browser session gets the best model.
MODEL_PARAM = "model"
ACTIVE_DATA = "active_data"
# The active dataset is kept in the URL the same way (?data=<imported dataset>|<folder>); without one, the default:
# $CIFAR10_DIR, or for a model its own run's data folder while that exists (as before datasets could be picked).
DATA_PARAM = "data"
DEFAULT_DATA = "default"

# User text made literal in Markdown: every page shows names and messages through it.
plain = markdown_literal


def store() -> RunStore:
    """The run store; when its index cannot be used (damaged, locked), say so and stop the page."""
    try:
        return RunStore()
    except RunError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


# ---------------------------------------------------------------- sidebar


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


def dataset_options() -> dict[str, str | None]:
    """The datasets to pick from, key -> folder: the default ($CIFAR10_DIR), then every imported dataset by name."""
    options = {DEFAULT_DATA: TrainConfig().resolved_data_dir()}
    options.update({d["name"]: d["path"] for d in datasets.list_datasets()})
    return options


def data_label(key: str) -> str:
    """A dataset key as the pickers show it (plain text: a selectbox does not read Markdown)."""
    return "CIFAR-10 (CIFAR10_DIR)" if key == DEFAULT_DATA else key


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


# ---------------------------------------------------------------- cached resources


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def _classifier(path: str, mtime: float) -> Classifier:
    return Classifier(path)


def classifier(choice: ModelChoice) -> Classifier:
    """The choice's loaded model, reused across reruns until its file changes; when its classes.json does not
    match it, say so and stop the page."""
    try:
        return _classifier(str(choice.model_path), choice.model_path.stat().st_mtime)
    except ClassesError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


class Slot:
    """A cache entry that its caller fills.

    A cached function that draws (a progress bar) is replayed on every later cache hit, onto
    a page that no longer has the element it drew into: Streamlit then fails the page with
    CacheReplayClosureError. So the cached function returns an empty Slot (data only), and
    the caller computes the value once, outside the cache, drawing its own progress.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()  # two sessions' first visits compute it once
        self.value = None


def fill(slot: Slot, compute: Callable[[], object], waiting: str) -> object:
    """`slot`'s value, computed by `compute` (which may draw progress) when it has none yet;
    while another session computes it, a spinner saying `waiting`."""
    if not slot.lock.acquire(blocking=False):
        with st.spinner(waiting):
            slot.lock.acquire()
    try:
        if slot.value is None:
            slot.value = compute()  # an exception leaves the slot empty, to be tried again
        return slot.value
    finally:
        slot.lock.release()


@st.cache_resource(show_spinner=False, max_entries=2)
def _test_set(data_dir: str, key: str, class_names: tuple[str, ...]) -> Slot:
    return Slot()


def test_set(data_dir: str | None, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The test images of a model's classes in `data_dir`, labelled in its output order, or None
    (with a message shown) when there are none.

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
        return fill(_test_set(data_dir, str(status["counts"]), tuple(class_names)),
                    lambda: split_predictions.load_test_set(data_dir, class_names, progress=progress),
                    "Another session is loading the test images…")
    except DataError as err:
        st.error(f"The test images could not be loaded: {plain(err)}")
        return None
    finally:
        bar.empty()


# ---------------------------------------------------------------- explanations

CHECK_IMAGES = 200  # test images the deletion check measures a method on


@st.cache_resource(show_spinner=False, max_entries=8)
def _explainer(path: str, mtime: float, method: str, layer: str | None, _model: Classifier) -> Explainer:
    # The loaded model comes from the caller: a cached function that called the spinner-drawing _classifier would draw.
    return explain.make(_model, method, layer)


@st.cache_resource(show_spinner=False, max_entries=64)
def _check_slot(path: str, mtime: float, method: str, layer: str | None, data: str) -> Slot:
    return Slot()


def _check_sample(choice: ModelChoice) -> tuple[np.ndarray, str] | None:
    """The test images the check measures, and their data id; None without test images (nothing said)."""
    data_dir = active_data_dir(choice)
    if not data_available(data_dir) or (images := test_set(data_dir, choice.class_names)) is None:
        return None
    return check_images(images[0], CHECK_IMAGES), f"{data_dir}|{len(images[0])}"


def _checked(choice: ModelChoice, method: str, layer: str | None, sample: tuple[np.ndarray, str]) -> dict:
    """The deletion check of one method and layer: once per model (kept on disk), with a progress bar the first time."""
    x, data_id = sample

    def compute() -> dict:
        label = plain(explain.label(method, layer))  # a layer's name comes with the model file
        bar = st.progress(0.0, text=f"Checking the maps of {label} on {len(x)} test images (once per model)…")
        try:
            return explain.checked(classifier(choice), method, layer, x, progress=lambda done, total: bar.progress(
                done / total, text=f"Checking the maps of {label}: {done:,}/{total:,} test images"))
        finally:
            bar.empty()

    slot = _check_slot(str(choice.model_path), choice.model_path.stat().st_mtime, method, layer, data_id)
    return fill(slot, compute, "Another session is checking these maps…")


def _pair_key(method: str, layer: str | None) -> str:
    return method if layer is None else f"{method}:{layer}"


def explanation_picker(choice: ModelChoice, key: str) -> Explainer:
    """A method picker (occlusion, or Grad-CAM at a layer) whose default is the first, in `explain.candidates`
    order, whose maps pass the deletion check on this model's test images; and the picked explainer."""
    pairs = {_pair_key(m, layer): (m, layer) for m, layer in explain.candidates(classifier(choice).model)}
    sample = _check_sample(choice)
    default = next(iter(pairs))
    if sample is not None:
        for pair_key, (method, layer) in pairs.items():
            if _checked(choice, method, layer, sample)["faithful"]:
                default = pair_key
                break
    if st.session_state.get(key) not in pairs:  # first visit, or another model's layers
        st.session_state[key] = default
    picked = st.selectbox("Explanation method", list(pairs), key=key, format_func=lambda k: explain.label(*pairs[k]),
                          help=f"{plain(explain.label(*pairs[default]))} by default: the first method whose maps pass the check below "
                               "on this model (occlusion, then Grad-CAM's layers; see the README's explanation check)")
    method, layer = pairs[picked]
    return _explainer(str(choice.model_path), choice.model_path.stat().st_mtime, method, layer, classifier(choice))


@st.cache_resource(show_spinner=False, max_entries=32)
def _overlay_slot(path: str, mtime: float, method: str, layer: str | None, images: str) -> Slot:
    return Slot()


def explanation_overlays(choice: ModelChoice, explainer: Explainer, images: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """`images` with `explainer`'s maps for `classes` (default: the predicted ones) over them: computed once per
    model, method and images (occlusion costs a forward pass per patch position), with a progress bar."""
    digest = hashlib.blake2b(np.ascontiguousarray(images).data, digest_size=8)
    digest.update(b"predicted" if classes is None else np.asarray(classes, np.int64).tobytes())

    def compute() -> np.ndarray:
        bar = st.progress(0.0, text=f"Computing the maps of {len(images)} image(s)…")
        try:
            return explainer.overlays(images, classes, progress=lambda done, total: bar.progress(
                done / total, text=f"Computing the maps: {done:,}/{total:,} images"))
        finally:
            bar.empty()

    slot = _overlay_slot(str(choice.model_path), choice.model_path.stat().st_mtime, explainer.method, explainer.layer, digest.hexdigest())
    return fill(slot, compute, "Another session is computing these maps…")


def explanation_check(choice: ModelChoice, explainer: Explainer) -> None:
    """Say whether `explainer`'s maps are faithful for this model (a caption with the check's numbers),
    measured on test images when there are any."""
    if (sample := _check_sample(choice)) is not None:
        row = _checked(choice, explainer.method, explainer.layer, sample)
        st.caption(f"{plain(explain.label(explainer.method, explainer.layer))}. {check_sentence(row, len(sample[0]))}")


def predictions(choice: ModelChoice, images: tuple[np.ndarray, np.ndarray]) -> Interpretation:
    """The model's test-set predictions: read from its folder, or computed once with a progress bar."""
    x, y = images
    # The temperature is in the key: a model calibrated again shows its new probabilities.
    memo_key = (str(choice.model_path), choice.model_path.stat().st_mtime, hash(y.tobytes()), split_predictions.temperature(choice))
    memo = st.session_state.get("predictions_memo")
    if memo and memo[0] == memo_key:
        return memo[1]
    interp = split_predictions.matching_predictions(choice, y)
    if interp is None:
        bar = st.progress(0.0, text="Predicting the test set (once per model)…")
        try:
            interp = split_predictions.compute_predictions(choice, x, y, progress=lambda done, total, _: bar.progress(done / total, text=f"Predicting the test set: {done:,}/{total:,}"))
        except ClassesError as err:  # its classes.json is another model's
            st.error(plain(err), icon=":material/error:")
            st.stop()
        finally:
            bar.empty()
    st.session_state["predictions_memo"] = (memo_key, interp)
    return interp


# ---------------------------------------------------------------- features, neighbours, data issues


@st.cache_resource(show_spinner="Loading the training images…", max_entries=2)
def _train_set(data_dir: str, key: str, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    # The test pages decode only the test split; the first use of the training images decodes them here.
    return split_predictions.load_train_set(data_dir, class_names)


def train_set(data_dir: str | None, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The training images of a model's classes in `data_dir`, or None when the folder has none."""
    status = describe_source(data_dir)
    if not status["ok"] or not status["counts"].get("train"):
        return None
    try:
        return _train_set(data_dir, str(status["counts"]), tuple(class_names))
    except DataError:
        return None


# Long first computations show a spinner with the time elapsed: a progress bar drawn from inside
# a cached function would be replayed on every later cache hit, on a page that no longer has it.
@st.cache_resource(show_spinner="Computing the model's features of these images (once per model; "
                                "later visits read them from disk)…", show_time=True, max_entries=4)
def _features(path: str, mtime: float, split: str, data: str, _x: np.ndarray) -> np.ndarray:
    return embeddings.cached_embeddings(Path(path), _x, split, model=_classifier(path, mtime).model)


def features(choice: ModelChoice, split: str, x: np.ndarray, data_id: str) -> np.ndarray:
    """The model's penultimate features of `x` (one split of the data named `data_id`)."""
    return _features(str(choice.model_path), choice.model_path.stat().st_mtime, split, data_id, x)


# Returns data only (see `_features`); `similar_search` draws the first pass's progress.
@st.cache_resource(show_spinner="Loading the similar-images search…", max_entries=2)
def _similar_search(path: str, mtime: float, data: str, _x_train: np.ndarray) -> similar.SimilarSearch:
    return similar.SimilarSearch(Path(path), _x_train, model=_classifier(path, mtime).model)


def similar_search(choice: ModelChoice) -> tuple[similar.SimilarSearch, np.ndarray, np.ndarray] | None:
    """The search over a model's training images, with the images and their labels; None without training images."""
    data_dir = active_data_dir(choice)
    train = train_set(data_dir, choice.class_names)
    if train is None:
        return None
    if not similar.descriptors_cached(choice.model_path, train[0]):
        # The first pass (minutes on a CPU) runs outside the cache, so its bar can count; the cached search reads its result.
        text = "Describing the training images for the similar-images search (once per model)"
        bar = st.progress(0.0, text=f"{text}…")
        similar.cached_descriptors(choice.model_path, train[0], model=classifier(choice).model,
                                   progress=lambda done, total, _: bar.progress(done / total, text=f"{text}: {done:,}/{total:,}"))
        bar.empty()
    search = _similar_search(str(choice.model_path), choice.model_path.stat().st_mtime, f"{data_dir}|{len(train[1])}", train[0])
    return search, train[0], train[1]


def similar_training_images(image: np.ndarray, found: tuple[similar.SimilarSearch, np.ndarray, np.ndarray],
                            class_names: tuple[str, ...], *, k: int = 8) -> None:
    """The `k` training images most like one uint8 image (32, 32, 3), with their labels and similarities."""
    search, x_train, y_train = found
    start = time.perf_counter()
    idx, sim = search.search(image[None], k)
    took_ms = (time.perf_counter() - start) * 1000
    st.caption(f"The {k} training images most like this one, out of {len(search):,}, found in {took_ms:.0f} ms. They are "
               "compared on the model's mid-level feature map, which keeps where colours and shapes are (a mirror image "
               "counts as the same). Similarity 1 is the same picture; on the shipped model a copy shifted by 1–2 pixels "
               "scores about 0.8–0.97 and a test image's nearest training images mostly 0.4–0.8 (README).")
    for col, i, s in zip(st.columns(k), idx[0], sim[0]):
        with col:
            st.image(previews.upscale(x_train[i]), width="stretch")
            st.markdown(f"**{plain(class_names[y_train[i]])}**")
            st.caption(f"train #{i} · similarity {s:.3f}")


@st.cache_resource(show_spinner=False, max_entries=4)
def _projection(path: str, mtime: float, method: str, data: str, _x: np.ndarray, _feats: np.ndarray) -> np.ndarray:
    return embeddings.cached_projection(Path(path), _x, "test", _feats, method)


def projection(choice: ModelChoice, x_test: np.ndarray, feats: np.ndarray, method: str, data_id: str) -> np.ndarray:
    """The 2-D map of the test features (PCA or UMAP), computed once per model and kept on disk."""
    with st.spinner(f"Computing the {method.upper()} map (once per model)…"):
        return _projection(str(choice.model_path), choice.model_path.stat().st_mtime, method, data_id, x_test, feats)


@st.cache_resource(show_spinner=False, max_entries=4)
def _label_issues(path: str, mtime: float, data: str, class_names: tuple[str, ...], _probs: np.ndarray, _y: np.ndarray) -> pd.DataFrame:
    return label_issues.find_label_issues(_probs, _y, class_names)


def label_issue_candidates(choice: ModelChoice, interp: Interpretation, data_id: str) -> pd.DataFrame:
    """cleanlab's label-issue candidates among the test images (out-of-sample probabilities, calibrated), most likely first."""
    # The temperature is part of the key: the candidates depend on the calibrated probabilities.
    return _label_issues(str(choice.model_path), choice.model_path.stat().st_mtime, f"{data_id}|T={interp.temperature}",
                         tuple(interp.class_names), interp.probs, interp.y)


@st.cache_resource(show_spinner=False, max_entries=2)
def _duplicate_slot(path: str, mtime: float, data: str) -> Slot:
    return Slot()


def duplicate_scan(choice: ModelChoice, x_test: np.ndarray, x_train: np.ndarray, data_id: str) -> duplicates.NeighbourScan:
    """Each test image's nearest test and training images (layout features). The first pass per model
    (minutes on a CPU) draws a bar with the images done; later ones come from the caches."""
    bar = st.empty()

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0),
                     text=f"Comparing every test image with the test and training images (once per model): {what} {done:,}/{total:,}")

    try:
        return fill(_duplicate_slot(str(choice.model_path), choice.model_path.stat().st_mtime, data_id),
                    lambda: duplicates.cached_scan(choice.model_path, x_test, x_train, model=classifier(choice).model, progress=progress),
                    "Another session is comparing the images…")
    finally:
        bar.empty()


# ---------------------------------------------------------------- galleries

PAGE_SIZE = 40


def image_tile(image: np.ndarray, true: str, predicted: str, p_predicted: float, p_true: float, loss: float | None = None,
               true_word: str = "true", uncertain: bool = False) -> None:
    """One image with the predicted class and its probability (green when right, red when wrong; flagged when
    `uncertain`), the true class and its probability, and optionally the loss."""
    st.image(previews.upscale(image), width="stretch")
    verdict = f":green[**✓ {plain(predicted)}**]" if true == predicted else f":red[**✗ {plain(predicted)}**]"
    st.markdown(f"{verdict} {p_predicted:.0%}" + (" :orange[uncertain]" if uncertain else ""))
    st.caption(f"{true_word}: {plain(true)} {p_true:.0%}" + (f" · loss {loss:.2f}" if loss is not None else ""))


def gallery(indices: np.ndarray, x: np.ndarray, interp: Interpretation, *, columns: int = 8, pick_key: str | None = None,
            overlays: np.ndarray | None = None, show_loss: bool = False, true_word: str = "true") -> None:
    """A grid of test images (or their `overlays`, one per index); with `pick_key`, each has a
    button that stores its index in session state (the page then opens its detail)."""
    names = np.asarray(interp.class_names)
    shown = x[indices] if overlays is None else overlays
    flagged = calibration.uncertain(interp.probs, interp.temperature)
    for start in range(0, len(indices), columns):
        cols = st.columns(columns)
        for col, i, image in zip(cols, indices[start:start + columns], shown[start:start + columns]):
            with col:
                image_tile(image, names[interp.y[i]], names[interp.preds[i]], float(interp.confidence[i]),
                           float(interp.true_probs[i]), float(interp.losses[i]) if show_loss else None, true_word,
                           bool(flagged[i]))
                if pick_key:
                    st.button(f"#{i}", key=f"{pick_key}-{i}", on_click=st.session_state.__setitem__, args=(pick_key, int(i)),
                              help="details: every class probability, where the evidence is, similar training images", width="stretch")


def paged_gallery(indices: np.ndarray, x: np.ndarray, interp: Interpretation, *, key: str, order: str,
                  columns: int = 8, page_size: int = PAGE_SIZE, pick_key: str | None = None, show_loss: bool = False,
                  overlay: Callable[[np.ndarray], np.ndarray | None] | None = None, true_word: str = "true") -> None:
    """`gallery` over all of `indices`, `page_size` at a time, with a page picker and a caption saying the order."""
    indices = np.asarray(indices)
    if not len(indices):
        return
    pages = -(-len(indices) // page_size)
    # Keyed by the images shown, so that another selection starts again at page 1.
    digest = hashlib.blake2b(indices.tobytes(), digest_size=6).hexdigest()
    page = st.pagination(pages, key=f"{key}_page_{digest}") if pages > 1 else 1
    shown = indices[(page - 1) * page_size: page * page_size]
    first = (page - 1) * page_size + 1
    st.caption(f"{order} · images {first:,}–{first + len(shown) - 1:,} of {len(indices):,} · page {page} of {pages}"
               + (" · click an image's number for its details" if pick_key else ""))
    gallery(shown, x, interp, columns=columns, pick_key=pick_key, overlays=overlay(shown) if overlay else None,
            show_loss=show_loss, true_word=true_word)


def pair_tile(left: np.ndarray, right: np.ndarray, caption: str) -> None:
    """Two images side by side, with a white gap, and what they are."""
    gap = np.full((left.shape[0], 2, 3), 255, np.uint8)
    st.image(previews.upscale(np.concatenate([left, gap, right], axis=1), 3), width="stretch")
    st.caption(caption)


def paged_pairs(pairs: pd.DataFrame, *, key: str, columns: int = 5, page_size: int = 20,
                tile: Callable[[pd.Series], None]) -> None:
    """Pairs of images (one row of `pairs` each), `page_size` at a time; `tile` draws one pair."""
    if pairs.empty:
        return
    pages = -(-len(pairs) // page_size)
    page = st.pagination(pages, key=f"{key}_page") if pages > 1 else 1
    shown = pairs.iloc[(page - 1) * page_size: page * page_size]
    first = (page - 1) * page_size + 1
    st.caption(f"Most similar first · pairs {first:,}–{first + len(shown) - 1:,} of {len(pairs):,} · page {page} of {pages}")
    for start in range(0, len(shown), columns):
        for col, (_, row) in zip(st.columns(columns), shown.iloc[start:start + columns].iterrows()):
            with col:
                tile(row)


SHOW_SIMILAR = "detail_show_similar"  # the session key of the dialog's similar-images switch


def image_detail(choice: ModelChoice, i: int, x_test: np.ndarray, interp: Interpretation, pick_key: str) -> None:
    """Everything about one test image: labels and loss, an explanation map for any class, every class probability,
    and the training images most like it."""
    left, middle, right = st.columns([1, 1, 2])
    left.image(previews.upscale(x_test[i], 6))
    names = interp.class_names
    left.markdown(f"true **{plain(names[interp.y[i]])}** ({interp.true_probs[i]:.1%}) · predicted "
                  f"**{plain(names[interp.preds[i]])}** ({interp.confidence[i]:.1%}) · loss {interp.losses[i]:.3f}")
    with middle:
        explained = st.selectbox("Where the evidence is for", names, index=int(interp.preds[i]), key=f"cam_class_{i}")
        cam = explanation_picker(choice, key=f"{pick_key}_cam_layer")
        st.image(previews.upscale(explanation_overlays(choice, cam, x_test[[i]], np.array([names.index(explained)]))[0], 6))
    right.plotly_chart(plots.probs_figure(dict(zip(names, interp.probs[i].tolist())), height=300),
                       key=f"{pick_key}_probs", config={"displayModeBar": False})
    st.markdown("**Similar training images**")
    # Off until asked for: the first search per model computes features of every training image (minutes on a
    # CPU), which the rest of the dialog does not need. Kept for the session (Streamlit forgets undrawn widgets).
    st.session_state[SHOW_SIMILAR] = st.session_state.get(SHOW_SIMILAR, False)
    if not st.toggle("Show the training images most like this one", key=SHOW_SIMILAR,
                     help="the first time for a model this compares features of every training image (minutes on a "
                          "CPU; kept on disk afterwards)"):
        return
    found = similar_search(choice)
    if found is None:
        st.caption("The data folder has no training images to compare with.")
    else:
        similar_training_images(x_test[i], found, interp.class_names)


def detail_dialog(choice: ModelChoice, x_test: np.ndarray, interp: Interpretation, pick_key: str) -> None:
    """Open the detail of the image whose number was clicked (stored under `pick_key`), as a dialog."""
    i = st.session_state.get(pick_key)
    if i is None or i >= len(interp.y):
        return

    def close() -> None:
        st.session_state.pop(pick_key, None)

    def body() -> None:
        image_detail(choice, i, x_test, interp, pick_key)
        if st.button("Close", key=f"{pick_key}_close"):
            close()
            st.rerun()

    st.dialog(f"Test image #{i}", width="large", on_dismiss=close)(body)()


def model_caption(choice: ModelChoice) -> str:
    """Which model, as Markdown for a caption: its label and file (a folder's name is the user's)."""
    return plain(f"Model: {choice.label} ({Path(choice.model_path).parent.name}/{Path(choice.model_path).name})")


def percent_column(label: str, help: str | None = None, *, bar: bool = True) -> dict:
    """A table column of 0-1 scores as percentages with one decimal in every row (Streamlit's plain
    "percent" drops trailing zeros: 89% beside 64.76%; the step's 3 decimals make it 1 as a percentage),
    with a bar, or without one where values may be missing: a bar column leaves them blank, while a
    number column shows the table's placeholder."""
    column = st.column_config.ProgressColumn if bar else st.column_config.NumberColumn
    return column(label, help=help, format="percent", min_value=0, max_value=1, step=0.001)


# ---------------------------------------------------------------- the training form


def fill_train_form(config: dict, source: str) -> None:
    """Put a run's settings into the Train page's form (kept until another preset is picked)."""
    from cifar_core.views import train_form

    values = train_form.form_defaults(base=config)
    for f in train_form.form_fields():
        st.session_state[f"cfg_{f.name}"] = train_form.widget_value(f, values[f.name])
    preset = st.session_state.get("train_preset") or next(iter(train_form.PRESETS))
    st.session_state["train_preset"] = st.session_state["form_preset"] = preset
    st.session_state["form_source"] = source
