""""None of these": a score of how much an input looks like the images a model learned from, and the threshold
below which it looks like none of its classes.

A classifier squeezes anything into one of its classes: a flat colour, noise, a digit. Each image gets scores
(higher: more like the model's own images) from one forward pass (`model_outputs.Outputs`):

- "msp": the top class's probability (Hendrycks and Gimpel, 2017), uncalibrated;
- "energy": the log-sum-exp of the logits (Liu et al., 2020);
- "mahalanobis": minus the Mahalanobis distance of the low-level features (an early pooling layer, averaged over
  the image) from a Gaussian fitted to training images with Ledoit-Wolf shrinkage (after Lee et al., 2018,
  who use several layers; the early one did the work on the shipped model);
- "combined" (the default): the lower of the Mahalanobis and energy scores, each standardised by its mean and
  spread on the validation images, so that an input odd in its colours and textures or in what the head makes
  of it is flagged. It had the best mean AUROC of the four over `bench ood`'s five sets on the shipped model
  (README, "None of these"); none of them detects new classes of photographs.

`bench ood` measures them all against out-of-distribution sets built offline (README). The threshold is the
score that RECALL (95%) of the run's own validation images reach. Below MIN_IMAGES validation images that
percentile is not trustworthy, and the stated fallback is used: the Mahalanobis score, its threshold the same
percentile on training images the Gaussian was not fitted on. The detector is stored beside the model as
`ood.json`: the method, the threshold, the images it rests on, and the Gaussian and standardisation it needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.special import logsumexp

from cifar_core.base import bounded_json
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.model.vgg import ModelLoadError
from cifar_core.predict.model_outputs import Outputs, batch_outputs, low_level_layer, outputs_model

Progress = Callable[[int, int, str], None]

OOD_FILE = "ood.json"
METHODS = ("combined", "mahalanobis", "energy", "msp")
DEFAULT_METHOD = "combined"
FALLBACK_METHOD = "mahalanobis"
RECALL = 0.95  # of in-distribution images at or above the threshold
MIN_IMAGES = 100  # validation images below which the fallback threshold is used
MIN_TRAIN_IMAGES = 20  # fewer training images: no Gaussian, no detector
FIT_IMAGES = 1000  # training images the Gaussian is fitted on (Ledoit-Wolf needs few: 200 did as well on the shipped model)
MAX_FILE_BYTES = 4 << 20  # the Gaussian of a 256-channel layer with its precision matrix is about 1.5 MB of JSON


class OODError(ModelLoadError):
    """An ood.json that cannot be used (damaged, or not one)."""


@dataclass
class Detector:
    """A fitted "none of these" detector: `method`'s score below `threshold` flags an input."""

    method: str
    threshold: float
    images: int  # the in-distribution images the threshold rests on
    rests_on: str  # "validation" or "training" (the fallback)
    tta: bool  # scores are of the views' average when the model predicts with TTA
    layer: str  # the low-level features' layer
    mean: list[float] = field(default_factory=list)  # the Gaussian of the low-level features
    precision: list[list[float]] = field(default_factory=list)
    standardise: dict[str, list[float]] = field(default_factory=dict)  # score -> [mean, standard deviation]
    reason: str = ""
    recall: float = RECALL

    def scores(self, outputs: Outputs, method: str | None = None) -> np.ndarray:
        """Each image's score under `method` (default: the detector's own); higher is more in-distribution."""
        method = method or self.method
        if method == "msp":
            return np.asarray(outputs.probs, np.float64).max(axis=1)
        if method == "energy":
            return logsumexp(np.asarray(outputs.logits, np.float64), axis=1)
        low = np.asarray(outputs.low, np.float64) - np.asarray(self.mean)
        distance = -np.einsum("ij,jk,ik->i", low, np.asarray(self.precision), low)
        if method == "mahalanobis":
            return distance
        z = [(s - self.standardise[name][0]) / self.standardise[name][1]
             for name, s in (("mahalanobis", distance), ("energy", self.scores(outputs, "energy")))]
        return np.minimum(*z)

    def flags(self, scores: np.ndarray) -> np.ndarray:
        """Which scores say "none of these"."""
        return np.asarray(scores) < self.threshold

    def describe(self) -> str:
        """The detector in words: method, threshold and what it rests on."""
        return (f"{self.method} score below {self.threshold:.3f}, the score {self.recall:.0%} of {self.images:,} "
                f"{self.rests_on} images reach ({self.reason})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "Detector":
        """ValueError, in words, for anything that is not a detector this module wrote."""
        if not isinstance(data, dict):
            raise ValueError("it does not hold a JSON object")
        if data.get("method") not in METHODS:
            raise ValueError(f"its method {data.get('method')!r} is not one of {', '.join(METHODS)}")
        if not _finite(data.get("threshold")) or not _finite(data.get("recall", RECALL)):
            raise ValueError("its threshold is not a number")
        images = data.get("images")
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"its image count {images!r} is not a positive whole number")
        if not isinstance(data.get("tta"), bool) or not all(isinstance(data.get(k), str) for k in ("rests_on", "layer", "reason")):
            raise ValueError("it lacks what a detector records (tta, rests_on, layer, reason)")
        mean, precision = _vector(data.get("mean")), _matrix(data.get("precision"))
        if precision.shape != (len(mean), len(mean)) or not len(mean):
            raise ValueError("its Gaussian is not a mean and a square precision matrix of the same size")
        standardise = data.get("standardise") or {}
        if not isinstance(standardise, dict) or not all(
                isinstance(v, list) and len(v) == 2 and all(map(_finite, v)) and v[1] > 0 for v in standardise.values()):
            raise ValueError("its standardisation is not pairs of a mean and a positive spread")
        if data["method"] == "combined" and not {"mahalanobis", "energy"} <= standardise.keys():
            raise ValueError("its combined score lacks the standardisation of its parts")
        return cls(data["method"], float(data["threshold"]), images, data["rests_on"], data["tta"], data["layer"],
                   mean.tolist(), precision.tolist(), {k: [float(a), float(b)] for k, (a, b) in standardise.items()},
                   data["reason"], float(data.get("recall", RECALL)))


def _finite(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _vector(value: object) -> np.ndarray:
    if not isinstance(value, list) or not all(map(_finite, value)):
        raise ValueError("its Gaussian's mean is not a list of numbers")
    return np.asarray(value, np.float64)


def _matrix(value: object) -> np.ndarray:
    if not isinstance(value, list) or not all(isinstance(row, list) and all(map(_finite, row)) for row in value):
        raise ValueError("its Gaussian's precision is not rows of numbers")
    rows = {len(row) for row in value}
    if len(rows) > 1:
        raise ValueError("its Gaussian's precision has rows of different lengths")
    return np.asarray(value, np.float64).reshape(len(value), rows.pop() if rows else 0)


def gaussian(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, precision) of low-level features, with Ledoit-Wolf shrinkage (a well-conditioned estimate from
    few images)."""
    from sklearn.covariance import LedoitWolf

    fitted = LedoitWolf().fit(np.asarray(low, np.float64))
    covariance = fitted.covariance_
    # A ridge so that features that never vary (a dead channel, identical images) still give a finite precision.
    ridge = 1e-6 * max(float(np.trace(covariance)) / len(covariance), 1e-12)
    return fitted.location_, np.linalg.pinv(covariance + ridge * np.eye(len(covariance)), hermitian=True)


def threshold_of(scores: np.ndarray, recall: float = RECALL) -> float:
    """The score that `recall` of in-distribution `scores` reach (their 1 - recall quantile)."""
    return float(np.quantile(np.asarray(scores, np.float64), 1.0 - recall))


def fit(val: Outputs, train: Outputs, *, tta: bool, layer: str, method: str = DEFAULT_METHOD) -> Detector | None:
    """The detector of a model from its outputs on its validation images (`val`) and on some training images
    (`train`, at most FIT_IMAGES are used for the Gaussian); None with fewer than MIN_TRAIN_IMAGES of those."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    n_train = len(train.low)
    if n_train < MIN_TRAIN_IMAGES:
        return None
    if len(val.low) < MIN_IMAGES:
        # The fallback: the Gaussian on half the training images, its threshold on the other half.
        half = np.random.default_rng(0).permutation(n_train)
        fit_rows, held = half[: n_train // 2][:FIT_IMAGES], half[n_train // 2:]
        mean, precision = gaussian(train.low[fit_rows])
        detector = Detector(FALLBACK_METHOD, 0.0, len(held), "training", tta, layer, mean.tolist(), precision.tolist())
        detector.threshold = threshold_of(detector.scores(train.take(held)))
        detector.reason = (f"fallback: {len(val.low)} validation images, fewer than the {MIN_IMAGES} a threshold needs, so "
                           "training images the Gaussian was not fitted on set it")
        return detector
    mean, precision = gaussian(train.low[:FIT_IMAGES])
    detector = Detector(method, 0.0, len(val.low), "validation", tta, layer, mean.tolist(), precision.tolist())
    for part in ("mahalanobis", "energy"):
        s = detector.scores(val, part)
        detector.standardise[part] = [float(s.mean()), float(max(s.std(), 1e-12))]
    detector.threshold = threshold_of(detector.scores(val))
    detector.reason = f"fitted on the run's {len(val.low):,} validation images"
    return detector


def fit_on_splits(model, splits, *, tta: bool, progress: Progress | None = None, val: Outputs | None = None,
                  seed: int = 0) -> Detector | None:
    """Fit `model`'s detector on its run's `splits` (its validation images, and training images drawn with
    `seed`); `val`: the model's outputs on the validation images when the caller has them (the trainer's
    calibration pass). None for a model without the studio's base and head, or without training images."""
    built = outputs_model(model)
    if built is None:
        return None
    size = int(model.input_shape[1])
    if val is None:
        val = batch_outputs(model, splits.x_val, input_size=size, tta=tta, progress=progress, built=built)
    wanted = FIT_IMAGES if len(splits.x_val) >= MIN_IMAGES else 2 * FIT_IMAGES  # the fallback halves them
    rows = np.sort(np.random.default_rng(seed).permutation(len(splits.x_train))[:wanted])
    train = batch_outputs(model, splits.x_train[rows], input_size=size, tta=tta, progress=progress, built=built)
    return fit(val, train, tta=tta, layer=low_level_layer(model.get_layer("base")))


def fit_and_write(folder: Path, model, splits, *, tta: bool, val: Outputs | None, seed: int,
                  progress: Progress | None = None) -> str:
    """Fit a run's detector at the end of its training (`val`: the calibration pass's outputs on its validation
    images, None without any), store it in the run `folder`, and say what was done, in words."""
    detector = fit_on_splits(model, splits, tta=tta, val=val, seed=seed, progress=progress) if val is not None else None
    if detector is None:
        return "skipped (no validation or training images, or no softmax head on a studio base)"
    write(folder, detector)
    return detector.describe()


def fit_for_model(model_path: Path, config, data_dir: str | None = None, progress: Progress | None = None) -> Detector | None:
    """Fit and store the detector of a saved model that has none (trained before detectors were), on its run's
    own splits (the carve training used); `config` is the run's TrainConfig, `data_dir` overrides its folder."""
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model
    from cifar_core.predict.model_data import load_model_data

    model_path = Path(model_path)
    model = load_model(model_path)
    class_names = model_class_names(model_path, int(model.output_shape[-1]))
    splits = load_model_data(data_dir or config.resolved_data_dir(), class_names, skip_bad=config.skip_bad, limit=config.limit,
                             progress=progress, splits_of=config).splits
    detector = fit_on_splits(model, splits, tta=bool(config.tta), progress=progress, seed=config.seed)
    if detector is not None:
        write(model_path.parent, detector)
    return detector


def ensure(model_path: Path, config: dict, data_dir: str | None = None,
           progress: Progress | None = None) -> tuple[Detector | None, str | None]:
    """(the detector of the model at `model_path`, None) when it has one, or can get one now: a model trained
    before detectors were has it fitted once on its run's splits (its settings `config`, the dict of its
    config.json; `data_dir` overrides their data folder) and stored beside it. (None, why) when it cannot."""
    from cifar_core.config import ConfigError, TrainConfig
    from cifar_core.data import locate
    from cifar_core.data.images import DataError

    folder = Path(model_path).parent
    try:
        stored = read(folder)
    except OODError as err:
        return None, str(err)
    if stored is not None:
        return stored, None
    if not config:
        return None, "the model has no config.json beside it, so its validation images are unknown"
    # The folder given wins; else the run's own folder while it exists; else $CIFAR10_DIR.
    own = locate.resolve_data_dir(config.get("data_dir") or None)
    data_dir = data_dir or (own if own and Path(own).is_dir() else TrainConfig().resolved_data_dir())
    if not data_dir:  # never Keras' download: the validation images are the run's own
        return None, "its data folder is not here (give one, or set CIFAR10_DIR) to fit one on its validation images"
    try:
        settings = TrainConfig.of_saved_model({**config, "data_dir": data_dir})
        detector = fit_for_model(model_path, settings, progress=progress)
    except (ConfigError, DataError) as err:
        return None, f"its validation images cannot be loaded to fit one ({err})"
    except OSError as err:
        return None, f"it could not be stored beside the model ({err.strerror or err})"
    return (detector, None) if detector is not None else (None, "the model has no softmax head on a studio base, or no training images")


def write(folder: Path, detector: Detector) -> Path:
    """Store `detector` as `folder`/ood.json, atomically."""
    path = Path(folder) / OOD_FILE
    atomic_write_text(path, json.dumps(detector.to_dict()))
    return path


def read(folder: Path) -> Detector | None:
    """The detector stored beside a model in `folder`; None when there is none; OODError, in words, when damaged."""
    path = Path(folder) / OOD_FILE
    if not path.is_file():
        return None
    try:
        return Detector.from_dict(bounded_json.read(path, max_bytes=MAX_FILE_BYTES))
    except OSError as err:
        raise OODError(_damaged(path, err.strerror or str(err))) from err
    except ValueError as err:  # JSONError is one too
        raise OODError(_damaged(path, str(err))) from err


def _damaged(path: Path, why: str) -> str:
    return (f"The \"none of these\" file {path} cannot be used: {why}. Delete it, and the studio fits it again "
            "from the model's validation images.")
