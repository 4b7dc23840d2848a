"""Explanation methods behind one interface: occlusion maps find what a model looks at, the deletion
check measures any method, the default is the first method that passes it, and the CLI says which."""

import json

import numpy as np
import pytest

from cifar_core.explain import check as explain
from cifar_core.explain import faithfulness, registry
from cifar_core.cli.main import main
from cifar_core.explain.base import GREY, ExplainError, Explainer
from cifar_core.explain.gradcam import GradCam
from cifar_core.predict.inference import Classifier
from cifar_core.explain.occlusion import Occlusion

REGION = (slice(16, 24), slice(8, 16))  # rows, columns the synthetic model looks at


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def region_model(batch: np.ndarray) -> np.ndarray:
    """A model that sees only REGION: class 0's probability grows with the region's brightness."""
    brightness = batch[:, REGION[0], REGION[1]].astype(np.float32).mean(axis=(1, 2, 3)) / 255
    p0 = 0.05 + 0.9 * brightness
    return np.stack([p0, *[(1 - p0) / 9] * 9], axis=1).astype(np.float32)


def grey_share(batch: np.ndarray) -> np.ndarray:
    """Class 0's probability falls with the share of grey pixels anywhere: no region matters more."""
    share = (batch == GREY).all(axis=-1).mean(axis=(1, 2))
    p0 = 0.9 - 0.8 * share
    return np.stack([p0, *[(1 - p0) / 9] * 9], axis=1).astype(np.float32)


def bright_region(n: int) -> np.ndarray:
    x = images(n, seed=2)
    x[:, REGION[0], REGION[1]] = 255
    return x


def test_occlusion_highlights_the_only_region_a_model_looks_at():
    x = bright_region(5)
    calls = []
    heat, classes = Occlusion(region_model).heatmaps(x, progress=lambda done, total: calls.append((done, total)))
    assert heat.shape == (5, 32, 32) and heat.dtype == np.float32 and heat.min() >= 0
    np.testing.assert_array_equal(classes, 0)
    np.testing.assert_allclose(heat.max(axis=(1, 2)), 1)  # scaled to each map's peak
    inside = np.zeros((32, 32), bool)
    inside[REGION] = True
    assert np.all(heat[:, inside] == 1)  # every patch over the region costs the most where it covers all of it
    # An 8x8 patch touches the region from up to 7 pixels away; beyond that, covering changes nothing.
    near = np.zeros((32, 32), bool)
    near[16 - 7:24 + 7, 8 - 7:16 + 7] = True
    assert np.all(heat[:, ~near] == 0)
    assert calls[-1] == (5, 5)


def test_occlusion_explains_the_class_asked_for_and_refuses_steps_that_miss_the_edge():
    x = bright_region(2)
    heat, classes = Occlusion(region_model).heatmaps(x, np.array([3, 3]))
    np.testing.assert_array_equal(classes, [3, 3])
    # Covering the region only raises class 3's probability: no evidence for it anywhere, and no negative map.
    np.testing.assert_array_equal(heat, 0)
    with pytest.raises(ExplainError, match="stride"):
        Occlusion(region_model, patch=8, stride=5)


def test_deletion_check_tells_a_faithful_map_from_one_that_singles_nothing_out():
    x = bright_region(8)
    row = faithfulness.deletion_check(Occlusion(region_model), x, region_model)
    assert row["method"] == "occlusion" and row["layer"] is None and row["map_size"] == 8
    # The hottest quarter holds the whole region: it goes from white to grey.
    assert row["hot_drop"] == pytest.approx(0.9 * (255 - GREY) / 255, abs=1e-5) and row["cold_drop"] == pytest.approx(0, abs=1e-6) and row["faithful"]

    # Blanking anywhere costs the same, so no map can point at anything.
    [blind] = [faithfulness.deletion_check(Occlusion(grey_share), x, grey_share)]
    assert blind["hot_drop"] == pytest.approx(0.8 * 0.25, abs=0.01) and blind["cold_drop"] == pytest.approx(0.8 * 0.25, abs=0.01)
    assert not blind["faithful"]


def test_the_check_is_said_in_words():
    passed = faithfulness.check_sentence({"hot_drop": 0.374, "cold_drop": 0.274, "faithful": True}, 500)
    assert passed.startswith("Check on 500 test images") and "0.37" in passed and "0.27" in passed
    assert "point at what the prediction depends on." in passed
    failed = faithfulness.check_sentence({"hot_drop": 0.242, "cold_drop": 0.250, "faithful": False}, 200)
    assert "do not point" in failed and "pick another method or layer" in failed


def test_check_on_a_tiny_model_gives_every_field_for_either_method(tiny_run):
    store, summary = tiny_run
    classifier = Classifier(store.get(summary["run_id"]).model_path)
    x = images(6, seed=7)
    for method, layer in [("occlusion", None), ("gradcam", "block2_relu2")]:
        row = json.loads(json.dumps(faithfulness.deletion_check(explain.make(classifier, method, layer), x, classifier.predict_arrays)))
        assert set(row) == {"method", "layer", "map_size", "hot_drop", "cold_drop", "faithful", "empty_maps"}
        assert (row["method"], row["layer"]) == (method, layer) and isinstance(row["faithful"], bool)
        assert -1 <= row["hot_drop"] <= 1 and -1 <= row["cold_drop"] <= 1 and 0 <= row["empty_maps"] <= 1
    assert isinstance(explain.make(classifier, "gradcam"), GradCam)
    with pytest.raises(ExplainError, match="takes no layer"):
        explain.make(classifier, "occlusion", "block2_relu2")
    with pytest.raises(ExplainError, match="unknown explanation method"):
        explain.make(classifier, "lime")


def test_candidates_put_occlusion_then_grad_cams_default_layer_first(tiny_run):
    store, summary = tiny_run
    model = Classifier(store.get(summary["run_id"]).model_path).model
    pairs = explain.candidates(model)
    assert pairs[:3] == [("occlusion", None), ("gradcam", "block3_relu3"), ("gradcam", "block3_relu2")]
    assert len(pairs) == 8 and pairs[-1] == ("gradcam", "block1_relu1")
    assert explain.candidates(model, ("gradcam",), ["block2_relu1"]) == [("gradcam", "block2_relu1")]
    rows = [{"faithful": False, "n": 0}, {"faithful": True, "n": 1}, {"faithful": True, "n": 2}]
    assert explain.pick_default(rows)["n"] == 1 and explain.pick_default(rows[:1])["n"] == 0


def test_a_new_method_is_one_explainer_and_one_registry_entry(tiny_run, monkeypatch):
    """The CLI's choices, the candidates (the pages' picker), the labels and `make` all read the registry."""
    from cifar_core.cli.main import build_parser

    class Blank(Explainer):
        method, name, takes_layer, layer, map_size = "blank", "Blank", False, None, 1

        @classmethod
        def for_classifier(cls, classifier, layer=None):
            return cls()

        @classmethod
        def label(cls, layer):
            return "Blank (nothing)"

    monkeypatch.setattr(registry, "METHODS", (*registry.METHODS, Blank))
    store, summary = tiny_run
    classifier = Classifier(store.get(summary["run_id"]).model_path)
    assert explain.candidates(classifier.model)[-1] == ("blank", None) and explain.label("blank", None) == "Blank (nothing)"
    assert isinstance(explain.make(classifier, "blank"), Blank)
    assert build_parser().parse_args(["explain", "--method", "blank"]).method == "blank"
    assert build_parser().parse_args(["predict", "--explain-method", "blank", "f.png"]).explain_method == "blank"


class RegionClassifier:
    """The tiny run's model file and layers, with predictions that see only REGION."""

    def __init__(self, classifier: Classifier):
        self.model, self.model_path = classifier.model, classifier.model_path
        self.predict_arrays = region_model


def test_default_explanation_stops_at_the_first_method_that_passes_and_keeps_the_check(tiny_run, monkeypatch):
    store, summary = tiny_run
    fake = RegionClassifier(Classifier(store.get(summary["run_id"]).model_path))
    x = bright_region(6)
    checks = []
    real = faithfulness.deletion_check
    monkeypatch.setattr(faithfulness, "deletion_check", lambda e, *a, **k: checks.append(e.method) or real(e, *a, **k))
    row = explain.default_explanation(fake, x)
    assert (row["method"], row["layer"], row["faithful"]) == ("occlusion", None, True) and checks == ["occlusion"]
    assert explain.default_explanation(fake, x) == row and checks == ["occlusion"]  # read from disk the second time


def test_cli_explain_ends_with_the_default_method_and_its_check(tiny_run, tiny_data, capsys, monkeypatch):
    store, summary = tiny_run
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    assert main(["explain", "--runs-dir", str(store.root), "--model", summary["run_id"], "--images", "12"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 8 and all(r["images"] == 12 for r in rows)
    assert [r["default"] for r in rows] == [False] * 7 + [True]  # the default comes last, once
    checked = {(r["method"], r["layer"]): r for r in rows}
    order = explain.candidates(Classifier(store.get(summary["run_id"]).model_path).model)
    assert set(checked) == set(order)
    first_passing = next((pair for pair in order if checked[pair]["faithful"]), order[0])
    assert (rows[-1]["method"], rows[-1]["layer"]) == first_passing
    assert {"hot_drop", "cold_drop", "faithful", "map_size", "empty_maps"} <= rows[-1].keys()

    # The old name checks one method when asked.
    assert main(["gradcam", "--runs-dir", str(store.root), "--model", summary["run_id"], "--images", "4",
                 "--method", "gradcam", "--layers", "block2_relu2"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (row["method"], row["layer"], row["default"], row["images"]) == ("gradcam", "block2_relu2", True, 4)


def test_cli_explain_refuses_layers_without_grad_cam(capsys):
    assert main(["explain", "--method", "occlusion", "--layers", "block2_relu2"]) == 2
    assert "--layers" in capsys.readouterr().err


def test_cli_predict_overlays_are_occlusion_maps_unless_grad_cam_is_asked_for(tiny_run, tmp_path, capsys):
    from PIL import Image

    from cifar_core.views.previews import upscale

    store, summary = tiny_run
    picture = tmp_path / "stripes.png"
    Image.fromarray(images(1, seed=9)[0]).save(picture)
    written = {}
    for flags in ([], ["--explain-method", "gradcam"]):
        out = tmp_path / ("cams" + "".join(flags))
        assert main(["predict", "--runs-dir", str(store.root), "--model", summary["run_id"], "--gradcam", str(out), *flags, str(picture)]) == 0
        written[bool(flags)] = np.asarray(Image.open(json.loads(capsys.readouterr().out)["gradcam"]))
    classifier = Classifier(store.get(summary["run_id"]).model_path)
    x = np.asarray(Image.open(picture))[None]
    np.testing.assert_array_equal(written[False], upscale(Occlusion(classifier.predict_arrays).overlays(x)[0], 4))
    np.testing.assert_array_equal(written[True], upscale(GradCam(classifier.model).overlays(x)[0], 4))
