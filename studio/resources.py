"""The caches the pages share: loaded models, decoded images, computed arrays, and the slots their callers fill.

These functions return data only and draw nothing (a `show_spinner` text is Streamlit's own): what needs a
progress bar is computed by the caller (studio/loading.py, studio/explanations.py) into a `Slot`. Streamlit
keys a cache by the function that defines it, so every cache the pages share is defined once, here.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from cifar_core.analysis import embeddings, label_issues, similar
from cifar_core.explain import check as explain
from cifar_core.explain.base import Explainer
from cifar_core.predict import split_predictions
from cifar_core.predict.inference import Classifier


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


@st.cache_resource(show_spinner="Loading the model…", max_entries=3)
def classifier_at(path: str, mtime: float) -> Classifier:
    """The model file at `path`, loaded once per modification time."""
    return Classifier(path)


@st.cache_resource(show_spinner=False, max_entries=2)
def test_set_slot(data_dir: str, key: str, class_names: tuple[str, ...]) -> Slot:
    """The slot of a folder's test images of `class_names` (`key`: its counts, so that a changed folder is reread)."""
    return Slot()


@st.cache_resource(show_spinner="Loading the training images…", max_entries=2)
def train_images(data_dir: str, key: str, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """A folder's training images of `class_names`, labelled in that order."""
    # The test pages decode only the test split; the first use of the training images decodes them here.
    return split_predictions.load_train_set(data_dir, class_names)


@st.cache_resource(show_spinner=False, max_entries=8)
def explainer_for(path: str, mtime: float, method: str, layer: str | None, _model: Classifier) -> Explainer:
    """An explanation method (at `layer`) over the loaded model `_model` (the model file at `path`)."""
    # The loaded model comes from the caller: a cached function that called the spinner-drawing classifier_at would draw.
    return explain.make(_model, method, layer)


@st.cache_resource(show_spinner=False, max_entries=64)
def check_slot(path: str, mtime: float, method: str, layer: str | None, data: str) -> Slot:
    """The slot of one method's deletion check on one model and sample of test images (`data`)."""
    return Slot()


@st.cache_resource(show_spinner=False, max_entries=32)
def overlay_slot(path: str, mtime: float, method: str, layer: str | None, images: str) -> Slot:
    """The slot of one method's maps over some images (`images`: their digest and the classes explained)."""
    return Slot()


# Long first computations show a spinner with the time elapsed: a progress bar drawn from inside
# a cached function would be replayed on every later cache hit, on a page that no longer has it.
@st.cache_resource(show_spinner="Computing the model's features of these images (once per model; "
                                "later visits read them from disk)…", show_time=True, max_entries=4)
def features_of(path: str, mtime: float, split: str, data: str, _x: np.ndarray) -> np.ndarray:
    """The penultimate features of `_x` (one split of the data named `data`) under the model file at `path`."""
    return embeddings.cached_embeddings(Path(path), _x, split, model=classifier_at(path, mtime).model)


# Returns data only (see `features_of`); loading.similar_search draws the first pass's progress.
@st.cache_resource(show_spinner="Loading the similar-images search…", max_entries=2)
def similar_search_over(path: str, mtime: float, data: str, _x_train: np.ndarray) -> similar.SimilarSearch:
    """The similar-images search over the training images `_x_train` (of the data named `data`)."""
    return similar.SimilarSearch(Path(path), _x_train, model=classifier_at(path, mtime).model)


@st.cache_resource(show_spinner=False, max_entries=4)
def projection_of(path: str, mtime: float, method: str, data: str, _x: np.ndarray, _feats: np.ndarray) -> np.ndarray:
    """The 2-D map (PCA or UMAP) of the test features `_feats`, kept on disk beside the model."""
    return embeddings.cached_projection(Path(path), _x, "test", _feats, method)


@st.cache_resource(show_spinner=False, max_entries=4)
def label_issues_of(path: str, mtime: float, data: str, class_names: tuple[str, ...], _probs: np.ndarray,
                    _y: np.ndarray) -> pd.DataFrame:
    """cleanlab's label-issue candidates among images with probabilities `_probs` and labels `_y`."""
    return label_issues.find_label_issues(_probs, _y, class_names)


@st.cache_resource(show_spinner=False, max_entries=2)
def duplicate_slot(data: str) -> Slot:
    """The slot of the duplicates found among one dataset's test and training images (no model is involved)."""
    return Slot()
