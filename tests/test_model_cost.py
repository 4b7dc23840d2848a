"""Model loading is bounded by what a model computes, not only by what it stores (cifar_core.model.model_cost)."""

from __future__ import annotations

import zipfile

import keras
import pytest

from cifar_core.config import MAX_INPUT_SIZE, TrainConfig
from cifar_core.model.vgg import ModelLoadError, build_model, load_model
from cifar_core.model.model_cost import MAX_ACTIVATION_BYTES, MAX_FLOPS, cost_problem, per_image_cost


def test_limits_are_the_studios_largest_network_with_a_margin():
    config = TrainConfig(arch="vgg16_bn", width=2.0, input_size=MAX_INPUT_SIZE, weights="none", head_units=(8192, 8192))
    with keras.StatelessScope(initialize_variables=False):
        cost = per_image_cost(build_model(config, num_classes=10))
    assert cost.activation_bytes <= MAX_ACTIVATION_BYTES / 1.5 and cost.flops <= MAX_FLOPS / 1.5
    assert cost.activation_bytes >= MAX_ACTIVATION_BYTES / 3 and cost.flops >= MAX_FLOPS / 3


def test_counts_a_convolution_exactly():
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(4, 3, padding="same")(inputs))
    cost = per_image_cost(model)
    assert cost.flops == 2 * 8 * 8 * 4 * 3 * 3 * 3
    assert cost.activation_bytes == 4 * 8 * 8 * (3 + 4)  # the input and the convolution's output


def test_an_input_of_any_size_cannot_be_bounded():
    inputs = keras.Input((None, None, 3))
    assert "not fixed" in cost_problem(keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs)))


def test_a_tiny_file_that_upsamples_to_gigabytes_is_refused_in_words(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.UpSampling2D(300)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = tmp_path / "upsample.keras"
    model.save(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelLoadError, match="MiB of activations") as err:
        load_model(path)
    assert "Traceback" not in str(err.value)


def _small_model(tmp_path):
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    path = tmp_path / "small.keras"
    model.save(path)
    return path


def test_members_declaring_too_much_in_total_are_refused(tmp_path):
    """Each padding member is under the per-member slack; together they declare far more than the file holds."""
    path = _small_model(tmp_path)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        for i in range(6):
            z.writestr(f"assets/pad{i}.bin", bytes(12 << 20))
    with pytest.raises(ModelLoadError, match="in total"):
        load_model(path)


def test_an_archive_of_many_members_is_refused(tmp_path):
    path = _small_model(tmp_path)
    with zipfile.ZipFile(path, "a") as z:
        for i in range(100):
            z.writestr(f"assets/{i}.txt", b"x")
    with pytest.raises(ModelLoadError, match="holds more than 64 files"):  # counted from its directory (bounded_zip)
        load_model(path)


def test_the_shipped_model_still_loads():
    assert load_model("artifacts/default/model.keras").output_shape[-1] == 10
