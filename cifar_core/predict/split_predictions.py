"""A model's predictions on the test images: where the images come from, and saved or fresh predictions."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from cifar_core.predict import calibration
from cifar_core.config import TrainConfig
from cifar_core.data.identity import stored_folder
from cifar_core.data.images import DataError, ImageData
from cifar_core.predict.evaluate import Interpretation, evaluate_model
from cifar_core.predict.model_data import load_model_data
from cifar_core.runs.model_choice import ModelChoice

Progress = Callable[[int, int, str], None]


def data_dir_for(choice: ModelChoice | None) -> str | None:
    """The test images to show for a model when no dataset is picked: $CIFAR10_DIR, else (none set) its run's
    data folder while that is on this machine (a relative one resolved against the checkout)."""
    return TrainConfig().resolved_data_dir() or stored_folder(choice.config.get("data_dir") if choice else None)


def load_test_set(data_dir: str | None, class_names: tuple[str, ...], progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test images and labels of a model's classes (labelled in its output order) from a data folder,
    decoded once, then cached; DataError without one, or when the folder lacks one of the classes.

    The training images are not decoded for this (pages listing test predictions need none).
    """
    data = _load(data_dir, class_names, progress, test_only=True)
    return data.x_test, data.y_test


def load_train_set(data_dir: str | None, class_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Training images and labels of a model's classes, as `load_test_set`."""
    data = _load(data_dir, class_names)
    return data.x_train, data.y_train


def _load(data_dir: str | None, class_names: tuple[str, ...], progress: Progress | None = None, *, test_only: bool = False) -> ImageData:
    if not data_dir:
        # Never fall back to Keras' download from the dashboard: it can hang without a network.
        raise DataError("No data folder set: point CIFAR10_DIR (or the Train page's data folder) at CIFAR-10.")
    return load_model_data(data_dir, class_names, progress=progress, test_only=test_only).data


def temperature(choice: ModelChoice) -> float:
    """The model's stored temperature for the way it predicts (its own TTA); 1 without one.
    CalibrationError (in words) when its calibration.json is damaged."""
    return calibration.temperature(choice.folder, bool(choice.config.get("tta")))


def saved_predictions(choice: ModelChoice) -> Interpretation | None:
    """The test predictions saved in the model's folder at the end of training, if any, calibrated."""
    try:
        saved = Interpretation.load(choice.folder)
    except (OSError, KeyError, ValueError):
        return None
    return saved.with_temperature(temperature(choice))


def matching_predictions(choice: ModelChoice, y_test: np.ndarray) -> Interpretation | None:
    """The saved test predictions, if they were made on exactly this test set."""
    saved = saved_predictions(choice)
    if saved is not None and len(saved.y) == len(y_test) and np.array_equal(saved.y, y_test):
        return saved
    return None


def compute_predictions(choice: ModelChoice, x_test: np.ndarray, y_test: np.ndarray, progress: Progress | None = None) -> Interpretation:
    """Predict the test set with the model (calibrated) and save the result (uncalibrated) into its run folder
    if it has none yet.

    Existing predictions are never overwritten (they are the run's own evaluation,
    possibly on a different test set than the one shown now), and the shipped
    model's folder is never written to.
    """
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model

    model = load_model(choice.model_path)
    tta = bool(choice.config.get("tta"))  # a model trained for TTA is always evaluated with it
    # Checked against the model's outputs here (ClassesError in words): a classes.json of another model would mislabel every row.
    interp = evaluate_model(model, x_test, y_test, input_size=int(model.input_shape[1]), tta=tta, progress=progress,
                            class_names=model_class_names(choice.model_path, int(model.output_shape[-1])))
    if choice.run_id and saved_predictions(choice) is None:
        try:
            interp.save(choice.folder)
        except OSError:
            pass  # a read-only model folder: the dashboard still keeps the result for the session
    return interp.with_temperature(temperature(choice))


def filter_predictions(
    table: pd.DataFrame,
    *,
    true: list[str] | None = None,
    predicted: list[str] | None = None,
    correct: bool | None = None,
    uncertain: bool = False,
    confidence: tuple[float, float] = (0.0, 1.0),
    sort_by: str = "confidence",
    descending: bool = True,
) -> pd.DataFrame:
    """Rows of `Interpretation.table()` matching the filters (empty lists mean any; `uncertain`: only rows flagged
    uncertain), sorted; the index is the image index."""
    keep = table["confidence"].between(*confidence)
    if true:
        keep &= table["true"].isin(true)
    if predicted:
        keep &= table["predicted"].isin(predicted)
    if correct is not None:
        keep &= table["correct"] == correct
    if uncertain:
        keep &= table["uncertain"]
    return table[keep].sort_values(sort_by, ascending=not descending, kind="stable")
