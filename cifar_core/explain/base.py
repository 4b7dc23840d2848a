"""What every explanation method gives: per-image heatmaps of where the evidence for a class lies.

Grad-CAM (`gradcam.GradCam`) and occlusion sensitivity (`occlusion.Occlusion`) are both
`Explainer`s, so the pages, the CLI and the deletion check (`faithfulness`) treat them alike.
Each subclass is one method, listed once in `registry.METHODS` with its name, label and options.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from cifar_core.base.errors import StudioError

if TYPE_CHECKING:
    import keras

    from cifar_core.predict.inference import Classifier

GREY = 124  # about CIFAR-10's mean pixel: what a blanked or occluded region is filled with

Progress = Callable[[int, int], None]  # (images done, images in all)


class ExplainError(StudioError, ValueError):
    """The model, method or layer cannot be explained; the message says why."""


class Explainer:
    """A method's heatmaps for one model (subclasses say how they are computed, and describe the method)."""

    method: str  # the method's name in the CLI's choices, the check rows and the cache: "occlusion", "gradcam"
    name: str  # the method as the user reads it
    takes_layer: bool  # it explains from a feature map of the model (chosen by layer); else it works on the input
    layer: str | None  # the feature map explained from; None for methods that work on the input
    map_size: int  # how many distinct cells the map has across (its resolution on the 32x32 image)

    @classmethod
    def for_classifier(cls, classifier: Classifier, layer: str | None = None) -> Explainer:
        """The method's explainer for this model; `layer` (None: the method's default) only where it `takes_layer`."""
        raise NotImplementedError

    @classmethod
    def layers(cls, model: keras.Model) -> list[str | None]:
        """The layers worth checking on `model`, preferred first; [None] for a method that works on the input."""
        return [None]

    @classmethod
    def label(cls, layer: str | None) -> str:
        """How the method, at `layer`, is named to the user."""
        raise NotImplementedError

    def heatmaps(self, images: np.ndarray, classes: np.ndarray | None = None,
                 progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Heatmaps (N, 32, 32) in [0, 1] for uint8 images (N, 32, 32, 3), and the classes explained
        (`classes`, default each image's predicted class)."""
        raise NotImplementedError

    def overlays(self, images: np.ndarray, classes: np.ndarray | None = None, progress: Progress | None = None) -> np.ndarray:
        """Each uint8 image with its heatmap for `classes` (default: the predicted class) blended over it."""
        if len(images) == 0:
            return images
        heat, _ = self.heatmaps(images, classes, progress)
        return np.stack([overlay(image, h) for image, h in zip(images, heat)])


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The image (uint8 HxWx3) with the heatmap (HxW in [0, 1]) blended over it in the jet colour map."""
    import matplotlib  # here, not at the top: the method registry, which the CLI's parser reads, imports this module

    colours = matplotlib.colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    return ((1 - alpha) * image.astype(np.float32) + alpha * colours).round().astype(np.uint8)


def peak_scaled(maps: np.ndarray) -> np.ndarray:
    """Maps (N, H, W) with negatives set to zero and each scaled to its own peak (all-zero maps stay zero)."""
    maps = np.maximum(maps, 0).astype(np.float32)
    peak = maps.max(axis=(1, 2), keepdims=True)
    return np.divide(maps, peak, out=np.zeros_like(maps), where=peak > 0)
