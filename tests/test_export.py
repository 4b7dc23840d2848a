"""Exports (SavedModel, TFLite, TFLite int8, ONNX) of a tiny trained run, each checked against Keras."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifar_core.ship import export

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_run, tiny_data):
    from cifar_core.data.loader import load_dataset

    store, summary = tiny_run
    return store.get(summary["run_id"]).model_path, load_dataset(str(tiny_data))


@pytest.mark.parametrize("fmt", export.FORMATS)
def test_export_passes_its_parity_check_and_writes_its_report(fmt, tiny, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("tf2onnx")
        pytest.importorskip("onnxruntime")
    path, data = tiny
    report = export.export_model(path, fmt, data.x_test, data.y_test, x_train=data.x_train, out_dir=tmp_path)
    assert report["images"] == len(data.y_test)  # fewer than 1,000 test images: all of them
    assert report["format"] == fmt and report["passed"] is (report["agreement"] >= export.min_agreement(fmt))
    if fmt != "tflite-int8":
        assert report["agreement"] >= export.FLOAT_MIN_AGREEMENT and report["passed"]
        assert report["max_probability_difference"] < 1e-3
        assert report["export_accuracy"] == pytest.approx(report["keras_accuracy"])
    assert 0 <= report["export_accuracy"] <= 1 and report["latency_ms"] > 0 and report["keras_latency_ms"] > 0
    assert report["size_bytes"] == export.size_bytes(tmp_path / export.FILE_NAMES[fmt]) > 0
    assert json.loads((tmp_path / f"{fmt}.json").read_text()) == report
    assert export.read_report(tmp_path, fmt) == report
    # The exported file runs on its own: raw pixels in, probabilities out.
    probs = export.load_exported(tmp_path / export.FILE_NAMES[fmt], fmt)(data.x_test[:3].astype(np.float32))
    assert probs.shape == (3, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-2)
    assert len(export.download_bytes(tmp_path / export.FILE_NAMES[fmt])) > 0


def test_int8_is_smaller_than_float(tiny, tmp_path):
    path, data = tiny
    float_report = export.export_model(path, "tflite", data.x_test, data.y_test, out_dir=tmp_path)
    int8_report = export.export_model(path, "tflite-int8", data.x_test, data.y_test, x_train=data.x_train, out_dir=tmp_path)
    assert int8_report["size_bytes"] < float_report["size_bytes"] / 2


def test_int8_without_training_images_is_refused_in_words(tiny, tmp_path):
    path, data = tiny
    with pytest.raises(export.ExportError, match="calibrate"):
        export.export_model(path, "tflite-int8", data.x_test, data.y_test, out_dir=tmp_path)
    with pytest.raises(export.ExportError, match="Unknown export format 'coreml'"):
        export.export_model(path, "coreml", data.x_test, data.y_test, out_dir=tmp_path)


def test_parity_fails_below_the_threshold_and_says_so():
    y = np.arange(200) % 10
    reference = np.eye(10)[y]
    exported = reference.copy()
    exported[:2] = np.eye(10)[(y[:2] + 1) % 10]  # 2 of 200 disagree: 99.0%
    report = {"format": "tflite", **export.parity(reference, exported, y, "tflite")}
    assert report["agreement"] == pytest.approx(0.99) and not report["passed"]
    assert report["keras_accuracy"] == 1.0 and report["export_accuracy"] == pytest.approx(0.99)
    message = export.failure_message(report)
    assert "99.0%" in message and "99.5%" in message and "Do not use it" in message
    assert export.parity(reference, exported, y, "tflite-int8")["passed"]  # int8's bar is lower


def test_a_bfloat16_model_is_exported_in_float32(tiny_data):
    import keras

    from cifar_core.model.vgg import build_model
    from conftest import tiny_config

    model = build_model(tiny_config(tiny_data, bf16=True), num_classes=10)
    clone = export.float32_model(model)
    assert {l.dtype_policy.name for l in clone.get_layer("base").layers} == {"float32"}
    x = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(clone(x)), np.asarray(model(x), dtype=np.float32), atol=0.05)
    assert keras.ops.convert_to_numpy(clone(x)).dtype == np.float32
