"""Calibration that never hurts: few validation images, none wrong, or no held-out gain keep T = 1 (issue 24).

Fast tests on synthetic probabilities, then (slow) two real tiny runs: one with 30 validation images and one
whose validation split it gets all right, each keeping its calibrated test NLL at most its raw one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from cifar_core.predict import calibration

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"


def drawn(n: int, sharpness: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z), probabilities softmax(sharpness * z): calibrated at sharpness 1."""
    z = rng.normal(0.0, 2.0, (n, 10))
    y = np.array([rng.choice(10, p=row) for row in softmax(z, axis=1)])
    return softmax(sharpness * z, axis=1).astype(np.float32), y  # float32, as a model gives them


def perfect_validation_and_test(rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """An over-confident-looking model that gets 300 validation images all right (the top class is the label)
    but 20% of its 2,000 test images wrong, each with a top probability of about 0.6-0.9."""
    def split(n: int, wrong_share: float) -> tuple[np.ndarray, np.ndarray]:
        logits = rng.normal(0.0, 1.0, (n, 10))
        top = logits.argmax(axis=1)
        y = top.copy()
        wrong = rng.random(n) < wrong_share
        y[wrong] = (top[wrong] + rng.integers(1, 10, wrong.sum())) % 10
        return softmax(logits * 2.0, axis=1).astype(np.float32), y

    return split(300, 0.0), split(2000, 0.2)


def test_thirty_validation_images_keep_t_one_and_say_why():
    probs, y = drawn(30, 3.0, np.random.default_rng(0))  # badly over-confident, yet 30 images prove nothing
    fitted = calibration.fit(probs, y, tta=False)
    assert fitted.temperature == 1.0 and fitted.images == 30 and fitted.fitted is None
    assert fitted.mistakes == int((probs.argmax(1) != y).sum())
    assert f"at least {calibration.MIN_IMAGES} validation images" in fitted.reason
    assert "30 validation images" in fitted.basis() and fitted.reason in fitted.basis()
    test_probs, test_y = drawn(2000, 3.0, np.random.default_rng(1))
    assert calibration.nll(calibration.apply_temperature(test_probs, fitted.temperature), test_y) <= calibration.nll(test_probs, test_y)


def test_a_temperature_fitted_to_near_zero_on_a_perfect_validation_split_improves_it_and_ruins_the_test_split():
    (val_p, val_y), (test_p, test_y) = perfect_validation_and_test(np.random.default_rng(2))
    assert (val_p.argmax(1) == val_y).all() and (test_p.argmax(1) != test_y).mean() > 0.15
    t = calibration.fit_temperature(val_p, val_y)  # the plain fit, judged on validation alone
    assert t < 0.1  # it runs to its lower bound: every validation image "deserves" probability 1
    assert calibration.nll(calibration.apply_temperature(val_p, t), val_y) < calibration.nll(val_p, val_y) / 10
    # ... and every wrong test prediction now costs a fortune.
    assert calibration.nll(calibration.apply_temperature(test_p, t), test_y) > 3 * calibration.nll(test_p, test_y)

    fitted = calibration.fit(val_p, val_y, tta=False)  # the checked fit keeps T = 1: nothing to rest a temperature on
    assert fitted.temperature == 1.0 and fitted.mistakes == 0 and "wrong validation images" in fitted.reason
    assert calibration.nll(calibration.apply_temperature(test_p, fitted.temperature), test_y) <= calibration.nll(test_p, test_y)


def test_a_temperature_that_helps_on_held_out_folds_is_kept_with_its_evidence():
    probs, y = drawn(2000, 3.0, np.random.default_rng(3))
    fitted = calibration.fit(probs, y, tta=True)
    assert fitted.temperature == pytest.approx(3.0, rel=0.15) and fitted.fitted == fitted.temperature
    held = fitted.held_out_nll
    assert held["folds"] == calibration.FOLDS and held["uncalibrated"] - held["fitted"] > held["standard_error"] > 0
    assert held["uncalibrated"] == pytest.approx(calibration.nll(probs, y))
    assert fitted.reason.startswith("kept, because")
    test_probs, test_y = drawn(2000, 3.0, np.random.default_rng(4))
    assert calibration.nll(calibration.apply_temperature(test_probs, fitted.temperature), test_y) < calibration.nll(test_probs, test_y)


def test_on_calibrated_probabilities_small_validation_splits_rarely_keep_a_temperature():
    """Any T but 1 harms an already calibrated model on unseen images: the held-out check must mostly say so."""
    rng = np.random.default_rng(5)
    kept_checked = kept_no_worse = 0
    for _ in range(60):
        probs, y = drawn(60, 1.0, rng)
        kept_checked += calibration.fit(probs, y, tta=False).temperature != 1.0
        on_held, at_one, _ = calibration.held_out_nll(probs, y)
        kept_no_worse += on_held <= at_one  # the weaker rule: no worse on held-out folds
    assert kept_checked <= 6 and kept_checked < kept_no_worse  # measured: 3 against 16 of 60 (README)


def test_the_prior_pulls_a_weakly_supported_temperature_toward_one():
    probs, y = drawn(80, 2.0, np.random.default_rng(6))
    mle, map_ = calibration.fit_temperature(probs, y), calibration.fit_temperature(probs, y, calibration.PRIOR_SD)
    assert 1.0 < map_ < mle
    many, many_y = drawn(4000, 2.0, np.random.default_rng(7))  # thousands of images outweigh the prior
    assert calibration.fit_temperature(many, many_y, calibration.PRIOR_SD) == pytest.approx(
        calibration.fit_temperature(many, many_y), rel=0.02)


def test_a_calibration_file_from_before_the_check_still_loads_and_new_fields_are_checked(tmp_path):
    old = {"temperature": 0.64, "tta": True, "images": 2000, "before": {"nll": 0.46}, "after": {"nll": 0.34}, "fitted_on": "validation"}
    (tmp_path / calibration.CALIBRATION_FILE).write_text(json.dumps(old))
    stored = calibration.read(tmp_path)
    assert stored.mistakes is None and stored.basis() == "temperature 0.640 fitted on 2,000 validation images"
    (tmp_path / calibration.CALIBRATION_FILE).write_text(json.dumps({**old, "mistakes": 2001}))
    with pytest.raises(calibration.CalibrationError, match="mistake count"):
        calibration.read(tmp_path)
    (tmp_path / calibration.CALIBRATION_FILE).write_text(json.dumps({**old, "mistakes": 3, "held_out_nll": {"fitted": "low"}}))
    with pytest.raises(calibration.CalibrationError, match="scores are not numbers"):
        calibration.read(tmp_path)


def test_the_shipped_calibration_records_what_it_rests_on():
    stored = calibration.read(SHIPPED)
    assert stored.images == 2000 and stored.mistakes == round((1 - stored.before["accuracy"]) * 2000)
    assert stored.reason.startswith("kept, because") and stored.temperature == stored.fitted


def tiny_run_test_nll(tmp_path_factory, data, **overrides) -> tuple[dict, calibration.Calibration, float, float]:
    """Train a tiny run; (its summary, its calibration, its test NLL raw, calibrated with its temperature)."""
    from conftest import tiny_config

    from cifar_core.predict.evaluate import Interpretation
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    root = tmp_path_factory.mktemp("calibration_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_ARTIFACTS", str(root))
        summary = train(tiny_config(data, **overrides), store=RunStore(root))
    run_dir = summary["run_dir"]
    stored = calibration.read(run_dir)
    saved = Interpretation.load(run_dir)  # uncalibrated test probabilities
    scored = calibration.summary(saved.uncalibrated, saved.y, stored.temperature)
    return summary, stored, scored["nll_uncalibrated"], scored["nll"]


@pytest.mark.slow
def test_a_run_with_thirty_validation_images_keeps_test_nll(tmp_path_factory, tiny_data):
    summary, stored, raw, calibrated = tiny_run_test_nll(tmp_path_factory, tiny_data, val_fraction=0.25)
    assert summary["val_images"] == stored.images == 30
    assert stored.temperature == 1.0 and "at least 50 validation images" in stored.reason
    assert calibrated <= raw


@pytest.mark.slow
def test_a_run_with_a_perfect_validation_split_keeps_test_nll(tmp_path_factory):
    from conftest import write_folders

    data = write_folders(tmp_path_factory.mktemp("perfect_data"), n_train=30, n_test=10, seed=4)
    summary, stored, raw, calibrated = tiny_run_test_nll(tmp_path_factory, data, epochs_head=3, epochs_finetune=3)
    assert stored.images == 60 and stored.mistakes == 0  # every validation image right
    assert stored.temperature == 1.0 and "wrong validation images" in stored.reason
    assert calibrated <= raw
