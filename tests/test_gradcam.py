"""Grad-CAM: the maps are the paper's, the default layer follows the map size, and the
CLI writes overlays. (The blanking check and the other methods: test_explain.py.)"""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_config
from PIL import Image

from cifar_core.cli.main import main
from cifar_core.data.pipeline import preprocess
from cifar_core.explain.base import overlay
from cifar_core.explain.gradcam import GradCam, GradCamError, cam_layers, default_layer
from cifar_core.model.vgg import build_base, build_head, build_model


def images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def gap_linear_model() -> keras.Model:
    """image -> base cut at block3 -> global average pooling -> softmax, no hidden layer."""
    keras.utils.set_random_seed(3)
    base = build_base("vgg16_bn", "none", 32, "block3_pool", width=0.25)
    head = build_head(tuple(base.output.shape[1:]), "gap", (), 0.0, num_classes=10)
    inputs = keras.Input((32, 32, 3))
    return keras.Model(inputs, head(base(inputs)))


def test_on_a_gap_linear_head_grad_cam_is_the_class_activation_map():
    # Selvaraju et al. show Grad-CAM reduces to CAM (Zhou et al.) when global average
    # pooling feeds a linear classifier: relu(sum_k W[k, c] * A_k), computed here directly.
    model = gap_linear_model()
    x = images(6)
    classes = np.array([0, 3, 9, 1, 1, 7])
    heat, explained = GradCam(model, "block3_pool").heatmaps(x, classes)
    features = model.get_layer("base")(preprocess(tf.constant(x)), training=False).numpy()
    kernel = model.get_layer("head").layers[-1].kernel.numpy()
    cam = np.maximum(np.einsum("nhwk,kn->nhw", features, kernel[:, classes]), 0)[..., None]
    cam = tf.image.resize(cam, (32, 32), method="bilinear").numpy()[..., 0]
    peak = cam.max(axis=(1, 2), keepdims=True)
    cam = np.divide(cam, peak, out=np.zeros_like(cam), where=peak > 0)  # a map can be zero everywhere
    np.testing.assert_array_equal(explained, classes)
    np.testing.assert_allclose(heat, cam, atol=1e-4)


def test_heatmaps_default_to_the_predicted_class_and_lie_in_0_1(tiny_data):
    model = build_model(tiny_config(tiny_data, bf16=True), num_classes=10)  # bf16 maps and gradients too
    x = images(5, seed=1)
    heat, explained = GradCam(model).heatmaps(x)
    np.testing.assert_array_equal(explained, np.argmax(model(preprocess(tf.constant(x))), axis=1))
    assert heat.shape == (5, 32, 32) and heat.dtype == np.float32
    assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    peaks = heat.max(axis=(1, 2))
    assert np.all((peaks == 0) | np.isclose(peaks, 1))  # each map is scaled to its own peak

    cam = GradCam(model)
    np.testing.assert_array_equal(cam.overlays(x), np.stack([overlay(image, h) for image, h in zip(x, heat)]))
    assert cam.overlays(x[:0]).shape == (0, 32, 32, 3)


@pytest.mark.parametrize("arch, size, expected", [
    ("vgg16", 32, "block3_conv3"),  # block4 is 4x4 here, too coarse
    ("vgg16", 64, "block4_conv3"),
    ("vgg16_bn", 32, "block3_relu3"),
])
def test_default_layer_is_the_deepest_at_least_8_wide(tiny_data, arch, size, expected):
    model = build_model(tiny_config(tiny_data, arch=arch, cut="block5_pool", input_size=size, width=0.25 if arch == "vgg16_bn" else 1.0), num_classes=10)
    assert default_layer(model) == expected
    layers = cam_layers(model)
    assert len(layers) == 13 and layers[-1] == ("block5_conv3" if arch == "vgg16" else "block5_relu3")


def test_unknown_layer_and_foreign_model_get_clear_errors(tiny_data):
    model = build_model(tiny_config(tiny_data), num_classes=10)
    with pytest.raises(GradCamError, match="block9_conv1.*block3_relu3"):
        GradCam(model, "block9_conv1")
    with pytest.raises(GradCamError, match="no 'base' part"):
        GradCam(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3), keras.layers.Flatten(), keras.layers.Dense(10)]))


def test_overlay_tints_only_where_the_map_is_hot():
    image = images(1, seed=4)[0]
    cold = np.zeros((32, 32), np.float32)
    hot = cold.copy()
    hot[5, 7] = 1.0
    a, b = overlay(image, cold), overlay(image, hot)
    assert a.shape == image.shape and a.dtype == np.uint8
    differs = np.argwhere((a != b).any(axis=-1))
    assert differs.tolist() == [[5, 7]]
    np.testing.assert_array_equal(overlay(image, hot, alpha=0.0), image)


def test_cli_predict_writes_an_overlay_per_classified_file(tiny_run, tmp_path, capsys):
    store, summary = tiny_run
    good = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    out = tmp_path / "cams"
    code = main(["predict", "--runs-dir", str(store.root), "--model", summary["run_id"], "--gradcam", str(out),
                 "--explain-method", "gradcam", str(good), str(bad)])
    assert code == 1  # one file failed
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["gradcam"].endswith(f"red_{first['top'][0]['label']}.png") and "gradcam" not in second
    assert [p.name for p in out.iterdir()] == [first["gradcam"].split("/")[-1]]
    assert Image.open(first["gradcam"]).size == (128, 128)


@pytest.mark.parametrize("flags, message", [(["--images", "0"], "--images"), (["--fraction", "1.5"], "--fraction")])
def test_cli_gradcam_check_refuses_bad_values(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error, before any model is loaded
        main(["gradcam", *flags])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
