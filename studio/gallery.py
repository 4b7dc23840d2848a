"""Image galleries on the pages: tiles of test images with their predictions, paged grids and pairs, and an
image's detail dialog (its explanation map, every class probability, the training images most like it).
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st

from cifar_core.analysis import similar
from cifar_core.predict import calibration
from cifar_core.predict.evaluate import Interpretation
from cifar_core.runs.model_choice import ModelChoice
from cifar_core.views import plots, previews
from studio.explanations import explanation_overlays, explanation_picker
from studio.loading import similar_search
from studio.text import plain


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
