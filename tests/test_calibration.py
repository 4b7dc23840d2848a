"""cifar_core.predict.calibration: temperature scaling, its scores, its file, and the calibrate command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from cifar_core.predict import calibration
from cifar_core.predict.evaluate import Interpretation

CLASSES = tuple(f"class {i}" for i in range(10))  # synthetic()'s labels

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"


def synthetic(n: int, sharpness: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (so softmax(z) is calibrated), and probabilities softmax(sharpness * z):
    over-confident for sharpness > 1, under-confident below 1."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, (n, 10))
    truth = softmax(z, axis=1)
    y = np.array([rng.choice(10, p=row) for row in truth])
    return softmax(sharpness * z, axis=1), y


@pytest.mark.parametrize("sharpness, side", [(3.0, "above"), (0.4, "below")])
def test_a_miscalibrated_model_gets_a_temperature_on_the_right_side_of_one_and_a_lower_ece(sharpness, side):
    probs, y = synthetic(6000, sharpness)
    val, held = slice(0, 3000), slice(3000, None)
    fitted = calibration.fit(probs[val], y[val], tta=False)
    # The labels come from softmax(z), so the ideal temperature undoes the sharpening.
    assert (fitted.temperature > 1.0) if side == "above" else (fitted.temperature < 1.0)
    assert fitted.temperature == pytest.approx(sharpness, rel=0.15)
    assert fitted.after["ece"] < fitted.before["ece"] / 2  # on the validation images it was fitted on
    assert fitted.after["nll"] < fitted.before["nll"]
    # ... and on images it never saw.
    assert calibration.ece(calibration.apply_temperature(probs[held], fitted.temperature), y[held]) < calibration.ece(probs[held], y[held]) / 2


def test_a_calibrated_model_keeps_a_temperature_near_one():
    probs, y = synthetic(6000, 1.0, seed=1)
    assert calibration.fit_temperature(probs, y) == pytest.approx(1.0, abs=0.1)
    assert calibration.ece(probs, y) < 0.03


def test_ece_nll_brier_and_bins_against_hand_computed_values():
    # Two images at confidence 0.9 (one right), two at 0.6 (both right); three classes.
    probs = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.6, 0.2], [0.2, 0.6, 0.2]])
    y = np.array([0, 1, 1, 1])
    table = calibration.reliability(probs, y)
    assert len(table) == calibration.BINS and table["count"].sum() == 4
    used = table[table["count"] > 0]
    np.testing.assert_allclose(used["confidence"], [0.6, 0.9])
    np.testing.assert_allclose(used["accuracy"], [1.0, 0.5])
    assert calibration.ece(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert calibration.nll(probs, y) == pytest.approx(-(np.log(0.9) + np.log(0.05) + 2 * np.log(0.6)) / 4)
    brier = ((0.1**2 + 2 * 0.05**2) + (0.9**2 + 0.95**2 + 0.05**2) + 2 * (0.2**2 + 0.4**2 + 0.2**2)) / 4
    assert calibration.brier(probs, y) == pytest.approx(brier)


def test_temperature_keeps_every_predicted_class_and_rows_sum_to_one():
    probs, _ = synthetic(500, 2.0, seed=2)
    for t in (0.3, 0.65, 1.7, 5.0):
        scaled = calibration.apply_temperature(probs, t)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(calibration.apply_temperature(probs, 1.0), probs.astype(np.float32))


def test_the_shipped_model_keeps_its_accuracy_and_its_stored_temperature_brings_test_ece_to_at_most_004():
    saved = Interpretation.load(SHIPPED)
    stored = calibration.read(SHIPPED)
    assert stored is not None and stored.fitted_on == "validation" and stored.tta
    calibrated = saved.with_temperature(stored.temperature)
    np.testing.assert_array_equal(calibrated.preds, saved.preds)
    assert calibrated.accuracy == saved.accuracy
    # The model is under-confident (label smoothing, averaged views): its temperature sharpens it.
    assert stored.temperature < 1.0
    assert calibration.ece(calibrated.probs, saved.y) <= 0.04 < calibration.ece(saved.probs, saved.y)


def test_calibration_file_round_trip_and_a_model_without_one(tmp_path):
    assert calibration.read(tmp_path) is None
    assert calibration.temperature(tmp_path, tta=True) == 1.0
    probs, y = synthetic(800, 2.0)
    fitted = calibration.fit(probs, y, tta=True)
    calibration.write(tmp_path, fitted)
    assert calibration.read(tmp_path) == fitted
    assert calibration.temperature(tmp_path, tta=True) == fitted.temperature
    assert calibration.temperature(tmp_path, tta=False) == 1.0  # fitted on averaged views: not for single views


@pytest.mark.parametrize("content, why", [
    (b"\x00\xff garbage", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"temperature": -1.0, "tta": False, "images": 10}).encode(), "temperature"),
    (json.dumps({"temperature": "hot", "tta": False, "images": 10}).encode(), "temperature"),
    (json.dumps({"temperature": 0.7, "tta": "yes", "images": 10}).encode(), "test-time augmentation"),
    (json.dumps({"temperature": 0.7, "tta": False, "images": 0}).encode(), "image count"),
    (b" " * (calibration.MAX_FILE_BYTES + 1), "bytes"),
])
def test_a_damaged_calibration_file_is_refused_in_words(tmp_path, content, why):
    (tmp_path / calibration.CALIBRATION_FILE).write_bytes(content)
    with pytest.raises(calibration.CalibrationError) as err:
        calibration.read(tmp_path)
    message = str(err.value)
    assert why in message and "cannot be used" in message and f"calibrate --model {tmp_path}" in message


def test_interpretation_with_temperature_shows_calibrated_and_saves_uncalibrated(tmp_path):
    probs, y = synthetic(300, 0.5)
    interp = Interpretation(probs.astype(np.float32), y, CLASSES).with_temperature(0.5)
    assert interp.temperature == 0.5
    np.testing.assert_allclose(interp.probs, calibration.apply_temperature(probs, 0.5), atol=1e-6)
    interp.save(tmp_path)
    np.testing.assert_allclose(Interpretation.load(tmp_path).probs, probs, atol=1e-6)
    # Applying another temperature replaces the first one, never stacks on it.
    np.testing.assert_allclose(interp.with_temperature(2.0).probs, calibration.apply_temperature(probs, 2.0), atol=1e-6)
    np.testing.assert_allclose(interp.with_temperature(1.0).probs, probs.astype(np.float32))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_data) -> Path:
    """An untrained tiny model in a folder with its config.json (no training: the command's plumbing is tested)."""
    from conftest import tiny_config

    from cifar_core.model.vgg import build_model

    folder = tmp_path_factory.mktemp("tiny_model")
    config = tiny_config(tiny_data)
    build_model(config, num_classes=10).save(folder / "model.keras")
    (folder / "config.json").write_text(config.to_json())
    return folder


def test_calibrate_command_fits_stores_and_evaluate_reports_it(tiny_model, capsys):
    from cifar_core.cli.main import main

    (tiny_model / calibration.CALIBRATION_FILE).unlink(missing_ok=True)
    assert main(["calibrate", "--model", str(tiny_model)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    stored = calibration.read(tiny_model)
    assert stored is not None and line["temperature"] == stored.temperature
    assert line["fitted_on"] == "validation" and line["images"] == stored.images > 0
    assert stored.after["nll"] <= stored.before["nll"] + 1e-9  # the fit minimises the NLL; T = 1 was a candidate

    assert main(["evaluate", "--model", str(tiny_model)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["temperature"] == stored.temperature
    assert {"ece", "ece_uncalibrated", "nll", "nll_uncalibrated", "brier", "brier_uncalibrated"} <= out.keys()
    assert out["temperature_fitted_on"] == f"{stored.images} validation images, tta=False"


def test_calibrate_refuses_a_damaged_file_at_use_and_a_model_without_settings(tiny_model, tmp_path, capsys):
    from cifar_core.cli.main import main
    from cifar_core.predict.inference import Classifier

    (tiny_model / calibration.CALIBRATION_FILE).write_text("{not json")
    with pytest.raises(calibration.CalibrationError, match="calibrate --model"):
        Classifier(tiny_model / "model.keras").probabilities(np.zeros((1, 32, 32, 3), np.uint8))
    assert main(["evaluate", "--model", str(tiny_model)]) == 1
    assert "cannot be used" in capsys.readouterr().err
    (tiny_model / calibration.CALIBRATION_FILE).unlink()

    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "model.keras").write_bytes((tiny_model / "model.keras").read_bytes())
    assert main(["calibrate", "--model", str(bare)]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_uncertain_flags_come_from_calibrated_probabilities_only():
    from cifar_core.predict import split_predictions

    probs, y = synthetic(400, 0.4, seed=3)  # under-confident: most top-class probabilities are low
    raw = Interpretation(probs.astype(np.float32), y, CLASSES)
    assert not raw.table()["uncertain"].any()  # without a temperature nothing is flagged
    calibrated = raw.with_temperature(calibration.fit_temperature(probs, y))
    table = calibrated.table()
    np.testing.assert_array_equal(table["uncertain"], calibrated.confidence < calibration.UNCERTAIN_BELOW)
    assert 0 < table["uncertain"].sum() < len(y)
    # The calibrated flags mean something: flagged predictions are right less often than half the time, the others more.
    assert table["correct"][table["uncertain"]].mean() < 0.5 < table["correct"][~table["uncertain"]].mean()
    only = split_predictions.filter_predictions(table, uncertain=True)
    assert set(only.index) == set(np.flatnonzero(table["uncertain"]))
