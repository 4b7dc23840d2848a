"""Classify arbitrary user images with the same preprocessing as training.

Any size or mode (RGBA, grayscale, palette, 16-bit, CMYK, EXIF-rotated, animated)
becomes one RGB 32x32 image. Files that are not images, are truncated or empty,
or declare more pixels than MAX_PIXELS get a per-file error, never an exception.
"""

from __future__ import annotations

import functools
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, ImageOps

from cifar_core.data import augment
from cifar_core.predict import calibration, ood
from cifar_core.predict.model_outputs import Outputs, outputs_model
from cifar_core.base import compat
from cifar_core.base import bounded_json
from cifar_core.data.classes import model_class_names
from cifar_core.data.images import NATIVE_SIZE
from cifar_core.data.pipeline import preprocess
from cifar_core.data.image_limits import (
    MAX_PIXELS,
    ImageError,
    check_pixels,
    check_size,
    plain_message,
    read_image_file,
    webp_canvas_size,
)
from cifar_core.model.vgg import load_model


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grayscale: scale to 8 bits instead of letting convert() clip.
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.max() > 0 else 1.0
        im = Image.fromarray((a / hi * 255).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info or im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, im)
    return im.convert("RGB")


def load_image(data: bytes) -> np.ndarray:
    """Decode image bytes into a uint8 (32, 32, 3) RGB array, or raise ImageError."""
    if not data:
        raise ImageError("the file is empty")
    check_size(len(data))
    if webp_size := webp_canvas_size(data):
        check_pixels(webp_size)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            check_pixels(im.size)
            im.draft("RGB", (NATIVE_SIZE * 4, NATIVE_SIZE * 4))  # JPEG: decode at reduced scale
            im.load()
            im = ImageOps.exif_transpose(im)
            im = to_rgb(im).resize((NATIVE_SIZE, NATIVE_SIZE), Image.Resampling.BILINEAR, reducing_gap=2.0)
            return np.asarray(im, dtype=np.uint8)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"the image is too large to decode safely: it declares more pixels than the limit of {MAX_PIXELS:,}") from err
    except Exception as err:  # PIL signals bad files with many exception types
        raise ImageError(f"not a readable image ({plain_message(err)})") from err


@dataclass
class Prediction:
    file: str
    top: list[dict] | None = None
    probs: np.ndarray | None = None
    error: str | None = None
    image: np.ndarray | None = None  # the 32x32 RGB image the model saw
    ood_score: float | None = None  # the "none of these" score (None: the model has no detector)
    ood_threshold: float | None = None
    none_of_these: bool | None = None  # the score is below the detector's threshold

    def to_json(self) -> dict:
        if self.error:
            return {"file": self.file, "error": self.error}
        return {"file": self.file, "top": self.top, "none_of_these": self.none_of_these, "ood_score": self.ood_score,
                "ood_threshold": self.ood_threshold}


def _file_stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=16)
def _stored_temperature(folder: Path, tta: bool, stamp: tuple[int, int] | None) -> float:
    # `stamp` (the file's mtime and size) is part of the key: a changed file is read again.
    return calibration.temperature(folder, tta) if stamp is not None else 1.0


@functools.lru_cache(maxsize=16)
def _stored_detector(folder: Path, stamp: tuple[int, int] | None) -> ood.Detector | None:
    return ood.read(folder) if stamp is not None else None


def trained_with_tta(model_path: Path) -> bool:
    """Whether the run that saved `model_path` asked for test-time augmentation (its config.json says so)."""
    try:
        config = bounded_json.read(Path(model_path).parent / "config.json")
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("tta") is True


class Classifier:
    """A loaded model plus one compiled prediction function, reused for every call.

    The prediction function is traced once for any batch of 32x32 uint8 images,
    then frozen: the weights become graph constants, so TensorFlow's graph optimiser
    folds them (and, for bf16 models, their casts) once instead of reading and
    converting every weight on each call. That is what makes a single image fast.
    """

    def __init__(self, model_path: str | Path, tta: bool | None = None):
        """Args:
            tta: average test-time augmentation views (`augment.tta_views`); default: what the
                config.json beside the model says it was trained for.
        """
        self.model_path = Path(model_path)
        self.model = load_model(self.model_path)
        self.input_size = int(self.model.input_shape[1])
        self.class_names = model_class_names(self.model_path, int(self.model.output_shape[-1]))
        self.tta = trained_with_tta(self.model_path) if tta is None else tta

        # The model's layers with its logits and low-level features as outputs too (None for a model without the
        # studio's base and head): one pass gives the probabilities and the "none of these" scores.
        network = outputs_model(self.model) or self.model

        def outputs(images):
            if not self.tta:
                return network(preprocess(images, self.input_size), training=False)
            # All views in one batch: one call of the frozen graph, not six.
            views, weights = augment.tta_views(tf.cast(images, tf.float32))
            raw = network(preprocess(views, self.input_size), training=False)
            return [augment.tta_average(tf.cast(o, tf.float32), weights) for o in raw] if isinstance(raw, list) else \
                augment.tta_average(raw, weights)

        traced = tf.function(outputs, input_signature=[tf.TensorSpec([None, NATIVE_SIZE, NATIVE_SIZE, 3], tf.uint8)])
        self._predict = compat.freeze(traced.get_concrete_function())
        self._predict(tf.zeros([1, NATIVE_SIZE, NATIVE_SIZE, 3], tf.uint8))  # warm up once

    def predict_outputs(self, images: np.ndarray) -> Outputs | None:
        """Probabilities, logits and low-level features of uint8 images (N, 32, 32, 3), views averaged; None for a
        model without the studio's base and head (it has probabilities only)."""
        parts = self._predict(tf.convert_to_tensor(images, tf.uint8))  # a frozen function returns a list
        return Outputs(*(np.asarray(p, dtype=np.float32) for p in parts)) if len(parts) == 3 else None

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """The network's own probabilities (N, len(class_names)) for uint8 images (N, 32, 32, 3), before any
        temperature: what an export must reproduce and what Grad-CAM's check measures."""
        return np.asarray(self._predict(tf.convert_to_tensor(images, tf.uint8))[0], dtype=np.float32)

    @property
    def temperature(self) -> float:
        """The model's stored temperature for this TTA setting (1 without one); read from calibration.json
        when that file changes, so a later `calibrate` reaches an already loaded model."""
        return _stored_temperature(self.model_path.parent, self.tta, _file_stamp(self.model_path.parent / calibration.CALIBRATION_FILE))

    @property
    def detector(self) -> ood.Detector | None:
        """The model's "none of these" detector (its ood.json) when it scores this TTA setting; None without one, or
        with a damaged one (`ood.ensure` says why). Read again when the file changes, so a detector fitted later
        reaches an already loaded model."""
        folder = self.model_path.parent
        try:
            detector = _stored_detector(folder, _file_stamp(folder / ood.OOD_FILE))
        except ood.OODError:  # the predictions stand without it
            return None
        return detector if detector is not None and detector.tta == self.tta else None

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (the model's temperature applied): what users are shown."""
        return calibration.apply_temperature(self.predict_arrays(images), self.temperature)

    def _classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, ood.Detector | None]:
        """(calibrated probabilities, "none of these" scores or None, the detector that scored them) from one pass."""
        detector = self.detector
        outputs = self.predict_outputs(images)
        raw = outputs.probs if outputs is not None else self.predict_arrays(images)
        scores = detector.scores(outputs) if detector is not None and outputs is not None else None
        return calibration.apply_temperature(raw, self.temperature), scores, detector if scores is not None else None

    def classify_bytes(self, items: list[tuple[str, bytes]], top_k: int = 3) -> list[Prediction]:
        """Classify (name, bytes) pairs; bad files get an error Prediction, the rest are batched."""
        results: list[Prediction] = []
        good: list[tuple[int, np.ndarray]] = []
        for name, data in items:
            try:
                image = load_image(data)
                good.append((len(results), image))
                results.append(Prediction(name, image=image))
            except ImageError as err:
                results.append(Prediction(name, error=str(err)))
        if good:
            probs, scores, detector = self._classify(np.stack([img for _, img in good]))
            for k, ((i, _), p) in enumerate(zip(good, probs)):
                order = np.argsort(-p)[:top_k]
                results[i].probs = p
                results[i].top = [{"label": self.class_names[j], "prob": float(p[j])} for j in order]
                if scores is not None:
                    results[i].ood_score, results[i].ood_threshold = float(scores[k]), detector.threshold
                    results[i].none_of_these = bool(detector.flags(scores[k]))
        return results

    def classify_files(self, paths: list[str | Path], top_k: int = 3) -> list[Prediction]:
        items = []
        errors = {}
        for path in paths:
            try:
                items.append((str(path), read_image_file(path)))
            except ImageError as err:
                errors[str(path)] = str(err)
                items.append((str(path), b""))
        results = self.classify_bytes(items, top_k)
        for r in results:
            if r.file in errors:
                r.error, r.top = errors[r.file], None
        return results
