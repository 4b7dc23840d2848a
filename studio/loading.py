"""The pages' models, images and computed arrays, read through the shared caches (studio/resources.py):
the first time with a progress bar or spinner drawn here, on the page that asked; in words when they cannot be had.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from cifar_core.analysis import similar
from cifar_core.data import duplicates
from cifar_core.data.classes import ClassesError
from cifar_core.data.images import DataError
from cifar_core.data.loader import describe_source
from cifar_core.predict import ood, split_predictions
from cifar_core.predict.evaluate import Interpretation
from cifar_core.predict.inference import Classifier
from cifar_core.runs.model_choice import ModelChoice
from studio import resources
from studio.state import active_data_dir, class_names_problem
from studio.text import plain


def classifier(choice: ModelChoice) -> Classifier:
    """The choice's loaded model, reused across reruns until its file changes; when its classes.json does not
    match it, say so and stop the page."""
    try:
        return resources.classifier_at(str(choice.model_path), choice.model_path.stat().st_mtime)
    except ClassesError as err:
        st.error(plain(err), icon=":material/error:")
        st.stop()


def none_of_these_problem(choice: ModelChoice) -> str | None:
    """Give the model its "none of these" detector if it has none (a model from before them: fitted once on its
    validation images, with a progress bar, and stored beside it); why it has none, in words, or None."""
    if classifier(choice).detector is not None:
        return None
    bar = st.progress(0.0, text="Fitting the \"none of these\" threshold on the model's validation images (once per model)…")

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Fitting the \"none of these\" threshold ({what}): {done:,}/{total:,}")

    try:
        detector, why = ood.ensure(choice.model_path, choice.config, active_data_dir(choice), progress)
    finally:
        bar.empty()
    return None if detector is not None and detector.tta == classifier(choice).tta else why


def fill(slot: resources.Slot, compute: Callable[[], object], waiting: str) -> object:
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


def test_set(data_dir: str | None, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The test images of a model's classes in `data_dir`, labelled in its output order, or None
    (with a message shown) when there are none.

    The first load decodes them with a progress bar; later ones come from the caches.
    """
    status = describe_source(data_dir)
    if not status["ok"]:
        st.info("Test images are not available: no CIFAR-10 data folder is set (see the sidebar).", icon=":material/image_not_supported:")
        return None
    if problem := class_names_problem(status["class_names"]):  # a damaged dataset: said, and the page goes on
        st.error(f"The test images could not be loaded: {plain(problem)}", icon=":material/error:")
        return None
    bar = st.empty()

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Loading the images ({what}): {done:,}/{total:,}")

    try:
        return fill(resources.test_set_slot(data_dir, str(status["counts"]), tuple(class_names)),
                    lambda: split_predictions.load_test_set(data_dir, class_names, progress=progress),
                    "Another session is loading the test images…")
    except DataError as err:
        st.error(f"The test images could not be loaded: {plain(err)}")
        return None
    finally:
        bar.empty()


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


def train_set(data_dir: str | None, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    """The training images of a model's classes in `data_dir`, or None when the folder has none."""
    status = describe_source(data_dir)
    if not status["ok"] or not status["counts"].get("train") or class_names_problem(status["class_names"]):
        return None
    try:
        return resources.train_images(data_dir, str(status["counts"]), tuple(class_names))
    except DataError:
        return None


def features(choice: ModelChoice, split: str, x: np.ndarray, data_id: str) -> np.ndarray:
    """The model's penultimate features of `x` (one split of the data named `data_id`)."""
    return resources.features_of(str(choice.model_path), choice.model_path.stat().st_mtime, split, data_id, x)


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
    search = resources.similar_search_over(str(choice.model_path), choice.model_path.stat().st_mtime, f"{data_dir}|{len(train[1])}", train[0])
    return search, train[0], train[1]


def projection(choice: ModelChoice, x_test: np.ndarray, feats: np.ndarray, method: str, data_id: str) -> np.ndarray:
    """The 2-D map of the test features (PCA or UMAP), computed once per model and kept on disk."""
    with st.spinner(f"Computing the {method.upper()} map (once per model)…"):
        return resources.projection_of(str(choice.model_path), choice.model_path.stat().st_mtime, method, data_id, x_test, feats)


def label_issue_candidates(choice: ModelChoice, interp: Interpretation, data_id: str) -> pd.DataFrame:
    """cleanlab's label-issue candidates among the test images (out-of-sample probabilities, calibrated), most likely first."""
    # The temperature is part of the key: the candidates depend on the calibrated probabilities.
    return resources.label_issues_of(str(choice.model_path), choice.model_path.stat().st_mtime, f"{data_id}|T={interp.temperature}",
                                     tuple(interp.class_names), interp.probs, interp.y)


def duplicates_found(x_test: np.ndarray, x_train: np.ndarray, data_id: str) -> duplicates.Found:
    """The exact and near duplicates among the test and training images (the Data page's finder); the first
    pass per dataset draws a bar, later ones come from the cache."""
    bar = st.empty()

    def progress(done: int, total: int, what: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0), text=f"Finding duplicates (once per dataset): {what} {done:,}/{total:,}")

    try:
        return fill(resources.duplicate_slot(data_id), lambda: duplicates.find_in_arrays(x_train, x_test, progress),
                    "Another session is comparing the images…")
    finally:
        bar.empty()
