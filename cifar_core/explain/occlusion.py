"""Occlusion sensitivity (Zeiler & Fergus, 2014): cover part of the image, see what the prediction loses.

A grey PATCH x PATCH square slides over the 32x32 image in steps of STRIDE; at each position
the map records how much the explained class's probability falls. A pixel's value is the mean
fall over the positions that cover it (as Captum's `Occlusion` attributes), so with 8x8 patches
every 4 pixels the map has 8x8 cells, as fine as Grad-CAM's block3 maps at 32 px.

The probabilities are the model's own prediction function (its test-time augmentation included),
so the map measures the prediction that is shown, and it is faithful to the deletion check
(`faithfulness`) by construction: the check blanks pixels with the same grey. It costs one
forward pass per patch position, batched: all positions of an image go through in one batch.
(tf-explain's OcclusionSensitivity does the same one image at a time and needs Keras 2.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from cifar_core.data.images import NATIVE_SIZE
from cifar_core.explain.base import GREY, ExplainError, Explainer, Progress, peak_scaled

if TYPE_CHECKING:
    from cifar_core.predict.inference import Classifier

PATCH = 8
STRIDE = 4
BATCH_ROWS = 512  # occluded images per forward call: bounds memory, whatever the number of images


class Occlusion(Explainer):
    """Occlusion maps for one prediction function (uint8 images (N, 32, 32, 3) -> probabilities (N, C))."""

    method, name = "occlusion", "Occlusion"
    takes_layer = False
    layer = None

    @classmethod
    def for_classifier(cls, classifier: Classifier, layer: str | None = None) -> Occlusion:
        # The model's own prediction function (its test-time augmentation included): the map explains what is shown.
        return cls(classifier.predict_arrays)

    @classmethod
    def label(cls, layer: str | None = None) -> str:
        return f"Occlusion ({PATCH}×{PATCH} grey patch every {STRIDE} px)"

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], patch: int = PATCH, stride: int = STRIDE):
        if not 0 < stride <= patch <= NATIVE_SIZE or (NATIVE_SIZE - patch) % stride:
            raise ExplainError(f"occlusion needs a stride of at most the patch size ({patch}) whose steps end at the "
                               f"image's edge ({NATIVE_SIZE} px); got patch {patch}, stride {stride}.")
        self._predict = predict
        starts = range(0, NATIVE_SIZE - patch + 1, stride)
        masks = np.zeros((len(starts) ** 2, NATIVE_SIZE, NATIVE_SIZE), bool)
        for i, (r, c) in enumerate((r, c) for r in starts for c in starts):
            masks[i, r:r + patch, c:c + patch] = True
        self._masks = masks
        self._weights = masks / masks.sum(axis=0)  # each pixel's mean over the positions covering it
        self.patch, self.stride = patch, stride
        self.map_size = NATIVE_SIZE // stride

    def heatmaps(self, images: np.ndarray, classes: np.ndarray | None = None,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        images = np.asarray(images, np.uint8)
        n, positions = len(images), len(self._masks)
        probs = self._predict(images)
        classes = probs.argmax(axis=1) if classes is None else np.asarray(classes)
        full = probs[np.arange(n), classes]
        drops = np.empty((n, positions), np.float32)
        per_call = max(1, BATCH_ROWS // positions)
        for start in range(0, n, per_call):
            chunk = images[start:start + per_call]
            occluded = np.where(self._masks[None, ..., None], np.uint8(GREY), chunk[:, None])
            seen = self._predict(occluded.reshape(-1, NATIVE_SIZE, NATIVE_SIZE, 3)).reshape(len(chunk), positions, -1)
            drops[start:start + len(chunk)] = full[start:start + len(chunk), None] - np.take_along_axis(
                seen, classes[start:start + len(chunk), None, None], axis=2)[..., 0]
            if progress:
                progress(start + len(chunk), n)
        # A position whose patch raised the probability holds no evidence for the class: zero, as Grad-CAM's ReLU.
        return peak_scaled(np.einsum("np,phw->nhw", drops, self._weights)), classes
