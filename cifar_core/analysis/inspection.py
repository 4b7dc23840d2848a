"""`python -m cifar_core inspect`: a model's data issues in numbers (label-mistake candidates, duplicates, leaks)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from cifar_core.predict import calibration
from cifar_core.analysis import label_issues
from cifar_core.data import duplicates
from cifar_core.data.images import ImageData
from cifar_core.predict.evaluate import Interpretation
from cifar_core.model.forward import predict_probs
from cifar_core.predict.inference import trained_with_tta

Progress = Callable[[int, int, str], None]


def test_probabilities(model_path: Path, model, x_test: np.ndarray, y_test: np.ndarray,
                       progress: Progress | None = None) -> tuple[np.ndarray, str]:
    """The model's calibrated test probabilities: saved beside it if made on these labels, else predicted now
    (one view); with the model's temperature for that way of predicting (see `calibration.temperature`)."""
    folder = Path(model_path).parent
    try:
        saved = Interpretation.load(folder)
        if np.array_equal(saved.y, y_test):
            t = calibration.temperature(folder, trained_with_tta(Path(model_path)))  # saved with the model's own TTA
            return calibration.apply_temperature(saved.probs, t), f"saved, temperature {t:.4f}"
    except (OSError, KeyError, ValueError):
        pass
    t = calibration.temperature(folder, False)
    probs = predict_probs(model, x_test, input_size=int(model.input_shape[1]), progress=progress)
    return calibration.apply_temperature(probs, t), f"predicted, temperature {t:.4f}"


def inspect_model(model_path: Path, data: ImageData, *, model=None, progress: Progress | None = None) -> dict:
    """Label-issue candidates on the test split, and the exact and near duplicates within and across the splits
    (data/duplicates.py: the finder of the Data page and Error analysis, so the counts are theirs), with timings.

    `model` is the loaded model at `model_path`, when the caller has it already.
    """
    from cifar_core.model.vgg import load_model

    model = model or load_model(model_path)
    timings = {}
    start = time.perf_counter()
    probs, source = test_probabilities(model_path, model, data.x_test, data.y_test, progress)
    issues = label_issues.find_label_issues(probs, data.y_test, data.class_names)
    timings["label_issues_s"] = time.perf_counter() - start

    start = time.perf_counter()
    counts = duplicates.find_in_arrays(data.x_train, data.x_test, progress).counts()
    timings["duplicates_s"] = time.perf_counter() - start
    return {
        "model": str(model_path),
        "test_images": int(len(data.y_test)),
        "train_images": int(len(data.y_train)),
        "label_issues": int(len(issues)),
        "label_issue_probabilities": f"test split, out-of-sample ({source})",
        "leaked_test_images": counts.pop("leaked_test_images"),
        "duplicates": counts,
        "duplicate_rule": duplicates.RULE,
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
