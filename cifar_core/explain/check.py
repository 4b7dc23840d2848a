"""Explanation methods by name (from `registry.METHODS`), and the one a model's pages and CLI show by default.

The default is the first method, in `candidates` order, whose maps pass the deletion check
(`faithfulness`) on the model's test images: occlusion first, because it measures the very
thing the check measures (the drop when a grey patch covers part of the image), then Grad-CAM
from its default layer, then Grad-CAM's other layers, deep to shallow. On the shipped model
no Grad-CAM layer passes and occlusion does (README, `python -m cifar_core explain`).
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_core.explain import faithfulness, registry
from cifar_core.analysis.embeddings import data_key, model_key
from cifar_core.explain.base import ExplainError, Explainer, Progress
from cifar_core.predict.inference import Classifier
from cifar_core.base.paths import cache_dir

INPUT = "input"  # how a method that works on the image itself (occlusion) names its "layer" where one is asked for


def make(classifier: Classifier, method: str = registry.METHODS[0].method, layer: str | None = None) -> Explainer:
    """The explainer of `method` for this model (`layer` only for a method that takes one, such as Grad-CAM;
    occlusion works on the image)."""
    kind = registry.method_named(method)
    if not kind.takes_layer and layer not in (None, INPUT):
        layered = " or ".join(m.name for m in registry.METHODS if m.takes_layer)
        raise ExplainError(f"{method} works on the image itself and takes no layer (got {layer!r}); layers are {layered}'s.")
    return kind.for_classifier(classifier, None if layer == INPUT else layer)


def candidates(model: keras.Model, methods: tuple[str, ...] | None = None, layers: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(method, layer) pairs in preference order (`registry.METHODS`, all of them by default): occlusion, then
    Grad-CAM's default layer and its other layers deep to shallow.

    `layers` limits the layers of the methods that take one (in the order given).
    """
    return [(m.method, layer) for m in registry.METHODS if methods is None or m.method in methods
            for layer in (layers if layers is not None and m.takes_layer else m.layers(model))]


def label(method: str, layer: str | None) -> str:
    """How a (method, layer) pair is named to the user."""
    return registry.method_named(method).label(layer)


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
