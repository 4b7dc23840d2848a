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

A temperature fitted on few images, or on images the model got all right, is not to
be trusted: on a perfect validation split the NLL keeps falling as T goes to zero, so
the fit runs to its bound and every later prediction reads 100%. So `fit` keeps T = 1
below MIN_IMAGES validation images or MIN_MISTAKES wrong ones, and otherwise keeps
the fitted T only when cross-validation says it helps: on FOLDS folds of the
validation split, temperatures fitted on the other folds must lower the held-out
folds' NLL below T = 1's by more than the standard error of that difference. On
already calibrated synthetic probabilities, where any T but 1 harms unseen images,
draws of 60 validation images then keep a temperature 3 times in 60 instead of 16
(tests/test_calibration_small_data.py). The fit itself is a maximum a posteriori one,
with a normal prior on log T (PRIOR_SD) that pulls T toward 1 when the data say little.
`calibration.json` records how many images and mistakes the temperature rests on and
why it was kept or not.
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
from sklearn.model_selection import KFold
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
# Below these a single temperature is not trustworthy and T = 1 is kept: with under MIN_MISTAKES wrong
# images, cross-validation cannot help either (most folds hold no mistake at all).
MIN_IMAGES = 50
MIN_MISTAKES = 5
FOLDS = 5
# The prior on log T: normal, mean 0 (T = 1), this standard deviation. A temperature beyond e^(±1) (0.37 to
# 2.7) then needs real evidence; on thousands of images the data outweigh it (shipped model: 0.642 → 0.643).
PRIOR_SD = 0.5

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


def fit_temperature(probs: np.ndarray, y: np.ndarray, prior_sd: float | None = None) -> float:
    """The temperature minimising the NLL of `probs` (held-out images, never the test split) on labels `y`;
    with `prior_sd`, the most probable one under a normal prior on log T (mean 0, that standard deviation).

    A bounded 1-D search over log T: the NLL is smooth and, for temperature scaling, convex in 1/T.
    """
    logp = log_probs(probs)
    y = np.asarray(y, dtype=np.int64)
    if not len(y):
        raise ValueError("a temperature needs at least one held-out image")
    rows = np.arange(len(y))
    # The prior's negative log-density, per image: the loss is the mean NLL.
    weight = 0.0 if prior_sd is None else 1.0 / (2.0 * prior_sd**2 * len(y))

    def loss(log_t: float) -> float:
        return float(-log_softmax(logp / math.exp(log_t), axis=1)[rows, y].mean()) + weight * log_t**2

    result = minimize_scalar(loss, bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded", options={"xatol": 1e-5})
    return float(math.exp(result.x))


def held_out_nll(probs: np.ndarray, y: np.ndarray, folds: int = FOLDS, seed: int = 0) -> tuple[float, float, float]:
    """(mean NLL of each image under the temperature fitted on the folds that do not hold it, mean NLL at T = 1,
    the standard error of their per-image difference): the temperature judged on images its fit did not see."""
    probs, y = np.asarray(probs), np.asarray(y, dtype=np.int64)
    losses = np.empty(len(y))
    for fit_rows, held in KFold(folds, shuffle=True, random_state=seed).split(probs):
        t = fit_temperature(probs[fit_rows], y[fit_rows], PRIOR_SD)
        losses[held] = -log_softmax(log_probs(probs[held]) / t, axis=1)[np.arange(len(held)), y[held]]
    at_one = -log_probs(probs)[np.arange(len(y)), y]
    return float(losses.mean()), float(at_one.mean()), float(np.std(at_one - losses, ddof=1) / math.sqrt(len(y)))


@dataclass
class Calibration:
    """A model's temperature and what it rests on: `images` validation images (`mistakes` of them wrong), with
    or without TTA; the temperature the fit found (`fitted`), its held-out NLL against T = 1's, and `reason`,
    in words, for keeping it or T = 1. Files written before the check have None for those."""

    temperature: float
    tta: bool
    images: int
    before: dict[str, float] = field(default_factory=dict)  # scores on those images at T = 1
    after: dict[str, float] = field(default_factory=dict)  # and with the temperature
    fitted_on: str = "validation"
    mistakes: int | None = None
    fitted: float | None = None  # the fit's temperature, kept or not (None: no fit was tried)
    held_out_nll: dict[str, float] | None = None  # {"fitted": ..., "uncalibrated": ..., "folds": ...}
    reason: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "Calibration":
        """ValueError, in words, for anything that is not a calibration this module wrote."""
        if not isinstance(data, dict):
            raise ValueError("it does not hold a JSON object")
        t = data.get("temperature")
        if not _number(t) or not T_MIN <= t <= T_MAX:
            raise ValueError(f"its temperature {t!r} is not a number from {T_MIN} to {T_MAX}")
        if not isinstance(data.get("tta"), bool):
            raise ValueError("it does not say whether the temperature was fitted with test-time augmentation")
        images, mistakes = data.get("images"), data.get("mistakes")
        if isinstance(images, bool) or not isinstance(images, int) or images < 1:
            raise ValueError(f"its image count {images!r} is not a positive whole number")
        if mistakes is not None and (isinstance(mistakes, bool) or not isinstance(mistakes, int) or not 0 <= mistakes <= images):
            raise ValueError(f"its mistake count {mistakes!r} is not a whole number from 0 to its {images} images")
        before, after, held = data.get("before", {}), data.get("after", {}), data.get("held_out_nll") or {}
        if not all(isinstance(d, dict) and all(_number(v) for v in d.values()) for d in (before, after, held)):
            raise ValueError("its scores are not numbers")
        fitted, reason = data.get("fitted"), data.get("reason")
        if (fitted is not None and not _number(fitted)) or (reason is not None and not isinstance(reason, str)):
            raise ValueError("its fitted temperature or its reason is not what a calibration holds")
        return cls(float(t), data["tta"], images, dict(before), dict(after), str(data.get("fitted_on", "validation")),
                   mistakes, None if fitted is None else float(fitted), dict(held) or None, reason)

    def basis(self) -> str:
        """What the temperature rests on and why it was kept, in words (for `evaluate` and the Calibration tab)."""
        if self.mistakes is None:  # written before the cross-validation check
            return f"temperature {self.temperature:.3f} fitted on {self.images:,} validation images"
        return (f"temperature {self.temperature:.3f} rests on {self.images:,} validation images, {self.mistakes:,} "
                f"of them wrong: {self.reason}")


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def fit(probs: np.ndarray, y: np.ndarray, *, tta: bool) -> Calibration:
    """The temperature of held-out probabilities and labels, checked (see the module's text), with the
    scores before and after it."""
    probs, y = np.asarray(probs), np.asarray(y, dtype=np.int64)
    images, mistakes = int(len(y)), int((probs.argmax(axis=1) != y).sum())
    before = scores(probs, y)

    def keep(t: float, reason: str, fitted: float | None = None, held: dict | None = None) -> Calibration:
        after = before if t == 1.0 else scores(apply_temperature(probs, t), y)
        return Calibration(t, bool(tta), images, before, after, "validation", mistakes, fitted, held, reason)

    if images < MIN_IMAGES:
        return keep(1.0, f"kept at 1, because a temperature needs at least {MIN_IMAGES} validation images")
    if mistakes < MIN_MISTAKES:
        return keep(1.0, f"kept at 1, because a temperature needs at least {MIN_MISTAKES} wrong validation images "
                         "(on a split the model gets all right the fit runs to zero and ruins unseen images)")
    on_held, at_one, error = held_out_nll(probs, y)
    held = {"fitted": on_held, "uncalibrated": at_one, "standard_error": error, "folds": FOLDS}
    fitted = fit_temperature(probs, y, PRIOR_SD)
    if at_one - on_held <= error:
        return keep(1.0, f"kept at 1, because on {FOLDS} cross-validation folds a fitted temperature did not lower the "
                         f"held-out NLL by more than its standard error ({on_held:.4f} against {at_one:.4f} at T = 1, "
                         f"± {error:.4f})", fitted, held)
    return keep(fitted, f"kept, because on {FOLDS} cross-validation folds it lowered the held-out NLL from "
                        f"{at_one:.4f} (T = 1) to {on_held:.4f} (± {error:.4f})", fitted, held)


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
