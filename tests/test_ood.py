""""None of these" (issue 24): the detector's fit, its file, the model outputs it scores, and what predict says."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.predict import ood
from cifar_core.predict.model_outputs import Outputs

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"


def outputs(n: int, rng: np.random.Generator, shift: float = 0.0, classes: int = 5, width: int = 8) -> Outputs:
    """Synthetic outputs: logits and low-level features drawn around 0 (in-distribution) or `shift` away."""
    logits = rng.normal(0.0, 1.0, (n, classes)) + 3.0 * np.eye(classes)[rng.integers(0, classes, n)]
    low = rng.normal(shift, 1.0, (n, width))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Outputs(probs.astype(np.float32), logits.astype(np.float32), low.astype(np.float32))


def test_the_threshold_keeps_95_percent_of_validation_images_and_flags_what_is_far():
    rng = np.random.default_rng(0)
    val, train, test, far = outputs(400, rng), outputs(600, rng), outputs(2000, rng), outputs(300, rng, shift=4.0)
    detector = ood.fit(val, train, tta=False, layer="block2_pool")
    assert detector.method == ood.DEFAULT_METHOD and detector.rests_on == "validation" and detector.images == 400
    assert np.mean(~detector.flags(detector.scores(val))) == pytest.approx(ood.RECALL, abs=0.005)
    assert np.mean(~detector.flags(detector.scores(test))) == pytest.approx(ood.RECALL, abs=0.03)  # unseen images too
    assert detector.flags(detector.scores(far)).mean() > 0.99
    # The Mahalanobis score against an independent computation: minus the squared distance under the stored Gaussian.
    diff = val.low[0].astype(np.float64) - np.asarray(detector.mean)
    assert detector.scores(val.take([0]), "mahalanobis")[0] == pytest.approx(-diff @ np.asarray(detector.precision) @ diff)
    # ... and the energy score: the log-sum-exp of the logits.
    assert detector.scores(val.take([0]), "energy")[0] == pytest.approx(np.log(np.exp(val.logits[0].astype(np.float64)).sum()), rel=1e-6)


def test_below_the_minimum_validation_images_the_stated_fallback_is_used():
    rng = np.random.default_rng(1)
    detector = ood.fit(outputs(ood.MIN_IMAGES - 1, rng), outputs(800, rng), tta=True, layer="block2_pool")
    assert detector.method == ood.FALLBACK_METHOD and detector.rests_on == "training" and detector.images == 400
    assert "fallback" in detector.reason and str(ood.MIN_IMAGES) in detector.reason
    unseen = outputs(2000, rng)
    assert np.mean(~detector.flags(detector.scores(unseen))) == pytest.approx(ood.RECALL, abs=0.03)
    assert ood.fit(outputs(500, rng), outputs(ood.MIN_TRAIN_IMAGES - 1, rng), tta=True, layer="x") is None


def test_ood_file_round_trip_and_damaged_files_are_refused_in_words(tmp_path):
    rng = np.random.default_rng(2)
    detector = ood.fit(outputs(200, rng), outputs(300, rng), tta=False, layer="block2_pool")
    assert ood.read(tmp_path) is None
    ood.write(tmp_path, detector)
    assert ood.read(tmp_path) == detector
    data = json.loads((tmp_path / ood.OOD_FILE).read_text())
    for damage, words in (({"method": "magic"}, "method"), ({"threshold": "low"}, "threshold"), ({"images": 0}, "image count"),
                          ({"precision": [[1.0]]}, "square precision"), ({"standardise": {}}, "standardisation")):
        (tmp_path / ood.OOD_FILE).write_text(json.dumps({**data, **damage}))
        with pytest.raises(ood.OODError, match=words) as err:
            ood.read(tmp_path)
        assert "cannot be used" in str(err.value) and "Delete it" in str(err.value)
    (tmp_path / ood.OOD_FILE).write_bytes(b"\x00 not json")
    with pytest.raises(ood.OODError, match="cannot be used"):
        ood.read(tmp_path)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_data) -> Path:
    """An untrained tiny model with its config.json (the plumbing is tested, not the detector's quality)."""
    from conftest import tiny_config

    from cifar_core.model.vgg import build_model

    folder = tmp_path_factory.mktemp("ood_model")
    config = tiny_config(tiny_data)
    build_model(config, num_classes=10).save(folder / "model.keras")
    (folder / "config.json").write_text(config.to_json())
    return folder


def test_the_outputs_model_gives_the_models_own_probabilities_and_their_logits(tiny_model):
    from scipy.special import softmax

    from cifar_core.model.forward import predict_probs
    from cifar_core.model.vgg import load_model
    from cifar_core.predict.model_outputs import batch_outputs

    model = load_model(tiny_model / "model.keras")
    x = np.random.default_rng(3).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    got = batch_outputs(model, x, input_size=32, tta=False)
    np.testing.assert_allclose(got.probs, predict_probs(model, x, input_size=32), atol=1e-6)
    np.testing.assert_allclose(softmax(got.logits.astype(np.float64), axis=1), got.probs, atol=1e-5)
    assert got.low.shape == (12, model.get_layer("base").get_layer("block2_pool").output.shape[-1])
    with_views = batch_outputs(model, x, input_size=32, tta=True)
    np.testing.assert_allclose(with_views.probs, predict_probs(model, x, input_size=32, tta=True), atol=1e-6)


def test_predict_fits_a_missing_threshold_once_and_reports_it_per_file(tiny_model, tmp_path, capsys):
    from cifar_core.cli.main import main
    from cifar_core.predict.inference import Classifier, load_image

    (tiny_model / ood.OOD_FILE).unlink(missing_ok=True)
    image = tmp_path / "red.png"
    Image.new("RGB", (32, 32), (250, 10, 10)).save(image)
    assert main(["predict", "--model", str(tiny_model), str(image)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    detector = ood.read(tiny_model)  # fitted from the tiny data's validation images and stored beside the model
    assert detector is not None and detector.rests_on == "training"  # 24 validation images: the fallback
    # Independently: the score of the file's outputs under the stored detector, and its verdict.
    classifier = Classifier(tiny_model / "model.keras")
    score = detector.scores(classifier.predict_outputs(load_image(image.read_bytes())[None]))[0]
    assert line["ood_score"] == pytest.approx(score, rel=1e-5) and line["ood_threshold"] == detector.threshold
    assert line["none_of_these"] == bool(score < detector.threshold)


def test_a_damaged_ood_file_leaves_predictions_standing_with_a_note(tiny_model, tmp_path, capsys):
    from cifar_core.cli.main import main

    (tiny_model / ood.OOD_FILE).write_text("{broken")
    image = tmp_path / "blue.png"
    Image.new("RGB", (32, 32), (0, 0, 250)).save(image)
    assert main(["predict", "--model", str(tiny_model), str(image)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["none_of_these"] is None
    assert "cannot be used" in captured.err and "Traceback" not in captured.err
    (tiny_model / ood.OOD_FILE).unlink()


def test_the_shipped_model_says_none_of_these_for_a_flat_colour_and_noise():
    from io import BytesIO

    from cifar_core.predict.inference import Classifier

    detector = ood.read(SHIPPED)
    assert detector.method == "combined" and detector.rests_on == "validation" and detector.images == 2000 and detector.tta

    def png(array: np.ndarray) -> bytes:
        buffer = BytesIO()
        Image.fromarray(array).save(buffer, "PNG")
        return buffer.getvalue()

    rng = np.random.default_rng(4)
    flat = np.full((32, 32, 3), (40, 160, 60), np.uint8)  # Chromium's stand-in camera green
    noise = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    results = Classifier(SHIPPED / "model.keras").classify_bytes([("flat.png", png(flat)), ("noise.png", png(noise))])
    assert [r.none_of_these for r in results] == [True, True]
    assert all(r.ood_score < r.ood_threshold == detector.threshold for r in results)


@pytest.mark.slow
def test_the_shipped_model_keeps_about_95_percent_of_cifar_test_images(shared_data):
    from cifar_core.predict.inference import Classifier
    from cifar_core.predict.model_data import load_model_data

    classifier = Classifier(SHIPPED / "model.keras")
    x = load_model_data(str(shared_data), classifier.class_names, test_only=True).data.x_test
    picked = x[np.random.default_rng(5).permutation(len(x))[:300]]
    detector = classifier.detector
    kept = ~detector.flags(detector.scores(classifier.predict_outputs(picked)))
    assert 0.90 <= kept.mean() <= 0.99  # 95% of validation images by construction; test images alike


def test_features_that_never_vary_still_give_a_usable_gaussian():
    mean, precision = ood.gaussian(np.zeros((30, 8)))  # a dead block, or thirty identical images
    assert np.isfinite(precision).all() and np.isfinite(mean).all()
    rng = np.random.default_rng(6)
    low = rng.normal(0.0, 1.0, (4000, 8))
    np.testing.assert_allclose(ood.gaussian(low)[1], np.linalg.inv(np.cov(low.T)), atol=0.05)  # plenty of images: near the plain estimate
