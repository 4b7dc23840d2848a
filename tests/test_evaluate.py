"""cifar_core.predict.evaluate: Interpretation on hand-made probabilities, against hand-computed answers."""

import json

import keras
import numpy as np
import pytest

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.predict.evaluate import Interpretation
from cifar_core.model.forward import predict_probs

# Six images of classes 0, 0, 1, 1, 2, 2 predicted as 0, 1, 1, 1, 2, 0.
TRUE = np.array([0, 0, 1, 1, 2, 2])
PRED_PROB = [(0, 0.7), (1, 0.6), (1, 0.9), (1, 0.5), (2, 0.8), (0, 0.55)]


def make_probs() -> np.ndarray:
    probs = np.zeros((6, 10))
    for i, (c, p) in enumerate(PRED_PROB):
        probs[i] = (1 - p) / 9
        probs[i, c] = p
    return probs


@pytest.fixture
def interp() -> Interpretation:
    return Interpretation(make_probs(), TRUE, CLASS_NAMES)


def test_accuracy_and_confusion_matrix(interp):
    assert interp.accuracy == pytest.approx(4 / 6)
    cm = interp.confusion_matrix()
    np.testing.assert_array_equal(cm[:3, :3], [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert cm.sum() == 6 and cm[3:].sum() == 0
    norm = interp.confusion_matrix(normalize=True)
    np.testing.assert_allclose(norm[:3, :3], [[0.5, 0.5, 0], [0, 1, 0], [0.5, 0, 0.5]])
    np.testing.assert_array_equal(norm[5], 0)  # a class with no images is a row of zeros, not NaN


def test_per_class_precision_recall_f1(interp):
    table = interp.per_class()
    assert list(table.index) == list(CLASS_NAMES)
    np.testing.assert_allclose(table["precision"][:3], [1 / 2, 2 / 3, 1])
    np.testing.assert_allclose(table["recall"][:3], [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(table["f1"][:3], [1 / 2, 0.8, 2 / 3])
    np.testing.assert_array_equal(table["support"], [2, 2, 2] + [0] * 7)
    assert (table.iloc[3:][["precision", "recall", "f1"]] == 0).all().all()


def test_most_confused_and_top_losses(interp):
    assert interp.most_confused() == [("airplane", "automobile", 1), ("bird", "airplane", 1)]
    np.testing.assert_allclose(interp.losses, -np.log([0.7, 0.4 / 9, 0.9, 0.5, 0.8, 0.45 / 9]))
    # Only mistakes by default, highest loss first: image 1 (p=0.4/9) before image 5 (p=0.45/9).
    np.testing.assert_array_equal(interp.top_losses(), [1, 5])
    np.testing.assert_array_equal(interp.top_losses(k=3, mistakes_only=False), [1, 5, 3])


def test_top_losses_table_shows_what_orders_it(interp):
    table = interp.top_losses_table(k=None)
    assert list(table.index) == [1, 5]
    assert list(table["predicted"]) == ["automobile", "airplane"] and list(table["true"]) == ["airplane", "bird"]
    np.testing.assert_allclose(table["p_predicted"], [0.6, 0.55])
    np.testing.assert_allclose(table["p_true"], [0.4 / 9, 0.45 / 9])
    np.testing.assert_allclose(table["loss"], -np.log(table["p_true"]))  # the loss is the true class's -log p
    assert table["loss"].is_monotonic_decreasing
    assert len(interp.top_losses_table(k=None, mistakes_only=False)) == 6


def test_cell_lists_images_most_confident_first(interp):
    np.testing.assert_array_equal(interp.cell(1, 1), [2, 3])
    np.testing.assert_array_equal(interp.cell(2, 0), [5])
    assert interp.cell(3, 3).size == 0


def test_table_has_one_row_per_image(interp):
    table = interp.table()
    assert len(table) == 6
    assert list(table["true"]) == ["airplane", "airplane", "automobile", "automobile", "bird", "bird"]
    assert list(table["predicted"]) == ["airplane", "automobile", "automobile", "automobile", "bird", "airplane"]
    assert list(table["correct"]) == [True, False, True, True, True, False]
    np.testing.assert_allclose(table["confidence"], [p for _, p in PRED_PROB])
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASS_NAMES]].to_numpy(), make_probs())


def test_save_and_load_without_pickle(interp, tmp_path):
    interp.save(tmp_path)
    interp.save(tmp_path, split="val")
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["accuracy"] == pytest.approx(4 / 6) and saved["n"] == 6
    assert saved["confusion_matrix"][2][:3] == [1, 0, 1]
    assert saved["per_class"]["automobile"]["f1"] == pytest.approx(0.8)
    assert (tmp_path / "evaluation_val.json").is_file()
    with np.load(tmp_path / "test_probs.npz", allow_pickle=False) as z:
        assert set(z.files) == {"probs", "y"}
    again = Interpretation.load(tmp_path, "val")
    np.testing.assert_allclose(again.probs, interp.probs, rtol=1e-6)
    np.testing.assert_array_equal(again.y, TRUE)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_predict_probs_preprocesses_and_tta_averages_its_six_views():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(inputs)))
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    pre = lambda imgs: keras.applications.vgg16.preprocess_input(imgs.astype(np.float32))  # noqa: E731
    plain = predict_probs(model, x, input_size=32, batch_size=3)
    np.testing.assert_allclose(plain, model.predict_on_batch(pre(x)), atol=1e-5)
    tta = predict_probs(model, x, input_size=32, tta=True)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    expected = 0.0
    # The image, shifted 1 px up-left and down-right (content moves by (dy, dx)), each also mirrored.
    for (dy, dx), weight in (((0, 0), 0.5), ((-1, -1), 0.25), ((1, 1), 0.25)):
        view = padded[:, 1 - dy:33 - dy, 1 - dx:33 - dx]
        for v in (view, view[:, :, ::-1]):
            expected = expected + weight / 2 * model.predict_on_batch(pre(v))
    np.testing.assert_allclose(tta, expected, atol=1e-5)
    assert not np.allclose(tta, plain)
