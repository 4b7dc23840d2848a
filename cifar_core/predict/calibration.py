"""Probabilities that mean what they say: one temperature per model, fitted on its validation split.

Temperature scaling (Guo et al., 2017): divide the model's log-scores by a single
number T fitted by minimising the negative log-likelihood on held-out images, then
take the softmax again. T > 1 softens an over-confident model, T < 1 sharpens an
under-confident one (the shipped model, after label smoothing and averaged test-time
views). The model's outputs here are softmax probabilities, possibly averaged over
test-time views, not logits, so T is applied to their logarithms:
`softmax(log(p) / T)`. For a single view that is exactly scaling the logits (the
softmax's normaliser is a constant per image); for averaged views it treats the log
of the average as the logits. Either way the order of the classes in each row, hence
the predicted class and the accuracy, never changes.

T is stored in `calibration.json` beside `model.keras`; a model without the file
keeps its probabilities as they are (T = 1).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from cifar_core.base import bounded_json
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.model.vgg import ModelLoadError

CALIBRATION_FILE = "calibration.json"
BINS = 15  # equal-width confidence bins of the expected calibration error, as in Guo et al.
T_MIN, T_MAX = 0.05, 20.0  # beyond these a model's probabilities would be all-or-nothing or uniform
MAX_FILE_BYTES = 64 * 1024  # a calibration file is a few hundred bytes; anything larger is not one
EPS = 1e-12
# A calibrated top-class probability below one half: the prediction is more likely wrong than right.
UNCERTAIN_BELOW = 0.5

Progress = Callable[[int, int, str], None]


class CalibrationError(ModelLoadError):
    """A calibration.json that cannot be used (damaged, or not one)."""


def log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`softmax(log(probs) / temperature)` per row, float32; `probs` itself (as float32) when T is 1."""
    if temperature == 1.0:
        return np.asarray(probs, dtype=np.float32)
    return softmax(log_probs(probs) / temperature, axis=1).astype(np.float32)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean negative log-likelihood of the true classes."""
    return float(-log_probs(probs)[np.arange(len(y)), y].mean()) if len(y) else float("nan")


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Mean over images of the squared distance between the probabilities and the one-hot label."""
    if not len(y):
        return float("nan")
    target = np.eye(probs.shape[1])[y]
    return float(((np.asarray(probs, dtype=np.float64) - target) ** 2).sum(axis=1).mean())


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> pd.DataFrame:
    """Per equal-width bin of the top-class confidence: its edges, how many images fell in it, their mean
    confidence and their accuracy (NaN for an empty bin). A calibrated model has accuracy ≈ confidence."""
    confidence = np.asarray(probs).max(axis=1)
    correct = np.asarray(probs).argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bins are (lower, upper], as in Guo et al.; a confidence of exactly 0 cannot occur (it is a max over classes).
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=correct, minlength=bins) / count
    return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count, "confidence": mean_conf, "accuracy": accuracy})


def ece(probs: np.ndarray, y: np.ndarray, bins: int = BINS) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over `bins` equal-width bins."""
    table = reliability(probs, y, bins)
    used = table["count"] > 0
    if not used.any():
        return float("nan")
    gap = (table["accuracy"] - table["confidence"]).abs()[used]
    return float((gap * table["count"][used]).sum() / table["count"].sum())


def scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """ECE (15 bins), NLL, Brier score, accuracy and mean top-class confidence of one set of probabilities."""
    probs = np.asarray(probs)
    y = np.asarray(y, dtype=np.int64)
    return {"ece": ece(probs, y), "nll": nll(probs, y), "brier": brier(probs, y),
            "accuracy": float((probs.argmax(axis=1) == y).mean()) if len(y) else float("nan"),
            "mean_confidence": float(probs.max(axis=1).mean()) if len(y) else float("nan")}


def uncertain(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Which rows' predictions are flagged uncertain: calibrated top-class probability below UNCERTAIN_BELOW.
    Only calibrated probabilities (temperature not 1) say how often a prediction is right, so none are flagged without one."""
    top = np.asarray(probs).max(axis=1)
    return top < UNCERTAIN_BELOW if temperature != 1.0 else np.zeros(len(top), bool)


def fit_temperature(probs: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the NLL of `probs` (held-out images, never the test split) on labels `y`.

    A bounded 1-D search over log T: the NLL is smooth and, for temperature scaling, convex in 1/T.
    """
    logp = log_probs(probs)
    y = np.asarray(y, dtype=np.int64)
    if not len(y):
        raise ValueError("a temperature needs at least one held-out image")
    rows = np.arange(len(y))

    def loss(log_t: float) -> float:
        return float(-log_softmax(logp / math.exp(log_t), axis=1)[rows, y].mean())

    result = minimize_scalar(loss, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


@dataclass
class Calibration:
    """A model's temperature and how it was fitted: on `images` validation images, with or without TTA."""

    temperature: float
    tta: bool
    images: int
    before: dict[str, float] = field(default_factory=dict)  # scores on those images at T = 1
    after: dict[str, float] = field(default_factory=dict)  # and with the temperature
    fitted_on: str = "validation"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "Calibration":
        """ValueError, in words, for anything that is not a calibration this module wrote."""
        if not isinstance(data, dict):
            raise ValueError("it does not hold a JSON object")
        t = data.get("temperature")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not T_MIN <= t <= T_MAX:
            raise ValueError(f"its temperature {t!r} is not a number from {T_MIN} to {T_MAX}")
        if not isinstance(data.get("tta"), bool):
            raise ValueError("it does not say whether the temperature was fitted with test-time augmentation")
        images = data.get("images")
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"its image count {images!r} is not a positive whole number")
        before, after = data.get("before", {}), data.get("after", {})
        if not all(isinstance(d, dict) and all(isinstance(v, (int, float)) for v in d.values()) for d in (before, after)):
            raise ValueError("its scores are not numbers")
        return cls(float(t), data["tta"], images, dict(before), dict(after), str(data.get("fitted_on", "validation")))


def fit(probs: np.ndarray, y: np.ndarray, *, tta: bool) -> Calibration:
    """Fit a temperature on held-out probabilities and labels, with their scores before and after."""
    t = fit_temperature(probs, y)
    return Calibration(t, bool(tta), int(len(y)), scores(probs, y), scores(apply_temperature(probs, t), y))


def write(folder: Path, calibration: Calibration) -> Path:
    """Store `calibration` as `folder`/calibration.json, atomically."""
    path = Path(folder) / CALIBRATION_FILE
    atomic_write_text(path, json.dumps(calibration.to_dict(), indent=2))
    return path


def read(folder: Path) -> Calibration | None:
    """The calibration stored beside a model in `folder`; None when there is none; CalibrationError when damaged."""
    path = Path(folder) / CALIBRATION_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CalibrationError(damaged(path, err.strerror or str(err))) from err
    try:
        if size > MAX_FILE_BYTES:
            raise ValueError(f"it holds {size:,} bytes, more than a calibration file ever does ({MAX_FILE_BYTES:,})")
        # Its nesting is bounded too: 20,000 brackets (40 KB) would overflow the parser's recursion.
        return Calibration.from_dict(bounded_json.loads(path.read_bytes(), what="it", max_bytes=MAX_FILE_BYTES))
    except OSError as err:
        raise CalibrationError(damaged(path, err.strerror or str(err))) from err
    except ValueError as err:
        raise CalibrationError(damaged(path, str(err))) from err


def damaged(path: Path, why: str) -> str:
    return (f"The calibration file {path} cannot be used: {why}. Fit it again with "
            f"`python -m cifar_core calibrate --model {path.parent}`, or delete it to use the model's probabilities as they are.")


def temperature(folder: Path, tta: bool) -> float:
    """The temperature to apply to the model in `folder` predicting with (`tta`) or without test-time
    augmentation: 1 without a calibration, or when it was fitted for the other setting (its T would not fit)."""
    stored = read(folder)
    return stored.temperature if stored is not None and stored.tta == tta else 1.0


def fit_for_model(model_path: Path, config, data_dir: str | None = None, progress: Progress | None = None) -> Calibration:
    """Fit and store the temperature of a saved model on its run's own validation split (the carve training
    used: the run's `val_fraction`, `seed`, `limit` and classes), with the model's TTA if it was trained with it.

    `config` is the run's TrainConfig; `data_dir` overrides its data folder.
    """
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.forward import predict_probs
    from cifar_core.predict.model_data import load_model_data
    from cifar_core.model.vgg import load_model

    model_path = Path(model_path)
    model = load_model(model_path)
    class_names = model_class_names(model_path, int(model.output_shape[-1]))
    # Loaded as training loaded it (its limit): the carve then holds the same images.
    splits = load_model_data(data_dir or config.resolved_data_dir(), class_names, skip_bad=config.skip_bad, limit=config.limit,
                             progress=progress, splits_of=config).splits
    probs = predict_probs(model, splits.x_val, input_size=int(model.input_shape[1]), tta=bool(config.tta), progress=progress)
    calibration = fit(probs, splits.y_val, tta=bool(config.tta))
    write(model_path.parent, calibration)
    return calibration


def summary(raw_probs: np.ndarray, y: np.ndarray, t: float) -> dict[str, float]:
    """What `evaluate` reports: the temperature, and ECE, NLL and Brier score with it and without it."""
    before, after = scores(raw_probs, y), scores(apply_temperature(raw_probs, t), y)
    return {"temperature": t, "ece": after["ece"], "ece_uncalibrated": before["ece"], "nll": after["nll"],
            "nll_uncalibrated": before["nll"], "brier": after["brier"], "brier_uncalibrated": before["brier"],
            "mean_confidence": after["mean_confidence"], "mean_confidence_uncalibrated": before["mean_confidence"]}
