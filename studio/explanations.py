"""Explanation maps on the pages: the method picker (its default checked on the model's test images),
the maps over images, and the sentence saying whether a method's maps are faithful.
"""

from __future__ import annotations

import hashlib

import numpy as np
import streamlit as st

from cifar_core.explain import check as explain
from cifar_core.explain.base import Explainer
from cifar_core.explain.faithfulness import check_images, check_sentence
from cifar_core.runs.model_choice import ModelChoice
from studio import resources
from studio.loading import classifier, fill, test_set
from studio.state import active_data_dir, data_available
from studio.text import plain


CHECK_IMAGES = 200  # test images the deletion check measures a method on


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

    slot = resources.check_slot(str(choice.model_path), choice.model_path.stat().st_mtime, method, layer, data_id)
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
    return resources.explainer_for(str(choice.model_path), choice.model_path.stat().st_mtime, method, layer, classifier(choice))


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

    slot = resources.overlay_slot(str(choice.model_path), choice.model_path.stat().st_mtime, explainer.method, explainer.layer, digest.hexdigest())
    return fill(slot, compute, "Another session is computing these maps…")


def explanation_check(choice: ModelChoice, explainer: Explainer) -> None:
    """Say whether `explainer`'s maps are faithful for this model (a caption with the check's numbers),
    measured on test images when there are any."""
    if (sample := _check_sample(choice)) is not None:
        row = _checked(choice, explainer.method, explainer.layer, sample)
        st.caption(f"{plain(explain.label(explainer.method, explainer.layer))}. {check_sentence(row, len(sample[0]))}")
