"""Explanation methods by name, and the one a model's pages and CLI show by default.

The default is the first method, in `candidates` order, whose maps pass the deletion check
(`faithfulness`) on the model's test images: occlusion first, because it measures the very
thing the check measures (the drop when a grey patch covers part of the image), then Grad-CAM
from its default layer, then Grad-CAM's other layers, deep to shallow. On the shipped model
no Grad-CAM layer passes and occlusion does (README, `python -m cifar_core explain`).
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_core.explain import faithfulness
from cifar_core.analysis.embeddings import data_key, model_key
from cifar_core.explain.base import ExplainError, Explainer, Progress
from cifar_core.explain.gradcam import GradCam, cam_layers, default_layer
from cifar_core.predict.inference import Classifier
from cifar_core.explain.occlusion import PATCH, STRIDE, Occlusion
from cifar_core.base.paths import cache_dir

METHODS = ("occlusion", "gradcam")
INPUT = "input"  # how a method that works on the image itself (occlusion) names its "layer" where one is asked for


def make(classifier: Classifier, method: str = "occlusion", layer: str | None = None) -> Explainer:
    """The explainer of `method` for this model (`layer` is Grad-CAM's; occlusion works on the image)."""
    if method == "occlusion":
        if layer not in (None, INPUT):
            raise ExplainError(f"occlusion works on the image itself and takes no layer (got {layer!r}); layers are Grad-CAM's.")
        # The model's own prediction function (its test-time augmentation included): the map explains what is shown.
        return Occlusion(classifier.predict_arrays)
    if method == "gradcam":
        return GradCam(classifier.model, None if layer == INPUT else layer)
    raise ExplainError(f"unknown explanation method {method!r}; use one of {', '.join(METHODS)}.")


def candidates(model: keras.Model, methods: tuple[str, ...] = METHODS, layers: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(method, layer) pairs in preference order: occlusion, Grad-CAM's default layer, its other layers deep to shallow.

    `layers` limits the Grad-CAM layers (in the order given).
    """
    pairs: list[tuple[str, str | None]] = [("occlusion", None)] if "occlusion" in methods else []
    if "gradcam" in methods:
        if layers is None:
            default = default_layer(model)
            layers = [default, *[name for name in reversed(cam_layers(model)) if name != default]]
        pairs += [("gradcam", name) for name in layers]
    return pairs


def label(method: str, layer: str | None) -> str:
    """How a (method, layer) pair is named to the user."""
    if method == "occlusion":
        return f"Occlusion ({PATCH}×{PATCH} grey patch every {STRIDE} px)"
    return f"Grad-CAM · {layer}"


def pick_default(rows: list[dict]) -> dict:
    """The first checked row that passes (rows in `candidates` order), else the first."""
    return next((row for row in rows if row["faithful"]), rows[0])


def checked(classifier: Classifier, method: str, layer: str | None, images: np.ndarray,
            progress: Progress | None = None) -> dict:
    """`faithfulness.deletion_check` of one method and layer on `images`: measured once, then read from disk."""
    folder = cache_dir() / "explain" / model_key(classifier.model_path)
    name = f"{method}-{layer or INPUT}-{data_key(images)}"
    row = faithfulness.saved_check(folder, name)
    if row is None:
        row = faithfulness.deletion_check(make(classifier, method, layer), images, classifier.predict_arrays, progress=progress)
        faithfulness.save_check(folder, name, row)
    return row


def default_explanation(classifier: Classifier, images: np.ndarray, progress: Progress | None = None) -> dict:
    """The check row of the model's default (method, layer): the first in `candidates` order that passes on
    `images` (checking no further than needed), else the first; `progress` hears of each check's maps."""
    rows = []
    for method, layer in candidates(classifier.model):
        rows.append(checked(classifier, method, layer, images, progress))
        if rows[-1]["faithful"]:
            break
    return pick_default(rows)
