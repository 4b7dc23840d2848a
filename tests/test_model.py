"""cifar_core.model.vgg: freezing per phase, vgg16_bn, cut points, heads, weights sources, dtype policy, safe loading."""

import urllib.error

import keras
import numpy as np
import pytest

from cifar_core.config import TrainConfig
from cifar_core.model.start_weights import IMAGENET_NOTOP_FILE
from cifar_core.model.vgg import (
    ModelLoadError, WeightsError, build_base, build_head, build_model, load_model, set_freeze,
)


def config(**overrides) -> TrainConfig:
    values = dict(weights="none", arch="vgg16", head="gap", head_units=(16,), dropout=0.0)
    values.update(overrides)
    return TrainConfig(**values).validate()


def trainable_conv_layers(base: keras.Model) -> list[str]:
    return [layer.name for layer in base.layers if layer.trainable_weights and "conv" in layer.name]


@pytest.fixture(scope="module")
def vgg16():
    return build_model(config(), num_classes=10)


@pytest.fixture(scope="module")
def vgg16_bn():
    return build_model(config(arch="vgg16_bn"), num_classes=10)


BLOCK5 = ["block5_conv1", "block5_conv2", "block5_conv3"]
BLOCK4 = ["block4_conv1", "block4_conv2", "block4_conv3"]


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("all", []),
        ("18", []),  # the seed's head phase: the first 18 layers are the whole conv stack
        ("14", BLOCK5),  # the seed's fine-tuning: block5 trains
        ("block5", BLOCK5),
        ("block4", BLOCK4 + BLOCK5),
        ("0", None),
        ("none", None),
    ],
)
def test_freeze_specs_choose_the_trainable_layers(vgg16, spec, expected):
    base, head = vgg16.get_layer("base"), vgg16.get_layer("head")
    set_freeze(base, spec)
    all_convs = [layer.name for layer in base.layers if "conv" in layer.name]
    assert trainable_conv_layers(base) == (all_convs if expected is None else expected)
    assert len(all_convs) == 13
    # The head always trains; the model's trainable weights are exactly base's plus head's.
    assert head.trainable_weights
    assert len(vgg16.trainable_weights) == len(base.trainable_weights) + len(head.trainable_weights)


def test_refreezing_after_finetune_freezes_again(vgg16):
    base = vgg16.get_layer("base")
    set_freeze(base, "none")
    set_freeze(base, "all")
    assert base.trainable_weights == []


def test_vgg16_bn_has_batchnorm_and_block_freezing_covers_it(vgg16_bn):
    base = vgg16_bn.get_layer("base")
    bns = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(bns) == 13
    assert vgg16_bn.name == "vgg16_bn_cifar10"
    set_freeze(base, "block5")
    assert [layer.name for layer in bns if layer.trainable] == ["block5_bn1", "block5_bn2", "block5_bn3"]


def test_vgg16_bn_refuses_imagenet_weights():
    with pytest.raises(WeightsError, match="vgg16_bn"):
        build_base("vgg16_bn", "imagenet", 32)


@pytest.mark.parametrize(
    "cut, size, shape",
    [("block5_pool", 32, (1, 1, 512)), ("block4_pool", 32, (2, 2, 512)), ("block3_pool", 32, (4, 4, 256)), ("block5_pool", 64, (2, 2, 512))],
)
def test_cut_points_set_the_feature_shape(cut, size, shape):
    base = build_base("vgg16", "none", size, cut)
    assert tuple(base.output.shape[1:]) == shape
    assert base.layers[-1].name == cut
    assert base.name == "base"


def test_flatten_head_is_the_seeds():
    head = build_head((1, 1, 512), "flatten", (512, 256), 0.5, num_classes=10)
    kinds = [type(layer).__name__ for layer in head.layers[1:]]
    assert kinds == ["Flatten", "Dense", "BatchNormalization", "Dropout", "Dense", "BatchNormalization", "Dropout", "Dense"]
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [512, 256, 10]
    assert dense[-1].activation.__name__ == "softmax"
    assert all(layer.rate == 0.5 for layer in head.layers if isinstance(layer, keras.layers.Dropout))


def test_gap_head_with_custom_units_and_dropout():
    head = build_head((4, 4, 256), "gap", (64,), 0.2, num_classes=3)
    assert isinstance(head.layers[1], keras.layers.GlobalAveragePooling2D)
    assert [d.units for d in head.layers if isinstance(d, keras.layers.Dense)] == [64, 3]
    assert [d.rate for d in head.layers if isinstance(d, keras.layers.Dropout)] == [0.2]
    probs = head.predict_on_batch(np.random.default_rng(0).normal(size=(3, 4, 4, 256)).astype("float32"))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


# ---------------------------------------------------------------- weights


@pytest.fixture(scope="module")
def vgg16_weights_file(tmp_path_factory):
    """Weights of a randomly initialised full VGG16 base, saved as a file the config can point at."""
    keras.utils.set_random_seed(123)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path_factory.mktemp("weights") / "vgg16_random.weights.h5"
    source.save_weights(path)
    return path, {layer.name: layer.get_weights() for layer in source.layers}


def test_weights_from_a_local_file_are_loaded(vgg16_weights_file):
    path, expected = vgg16_weights_file
    keras.utils.set_random_seed(0)  # a different init than the file's
    model = build_model(config(weights=str(path), cut="block4_pool"), num_classes=10)
    base = model.get_layer("base")
    assert len(trainable_conv_layers(base)) == 10
    loaded = [layer for layer in base.layers if layer.weights]
    assert len(loaded) == 10
    for layer in loaded:
        for got, want in zip(layer.get_weights(), expected[layer.name], strict=True):
            np.testing.assert_array_equal(got, want)


def test_legacy_h5_weights_like_the_imagenet_file_are_loaded(vgg16_weights_file, tmp_path):
    # The ImageNet notop file is Keras' legacy HDF5 weights format; --weights PATH accepts it too.
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    _, expected = vgg16_weights_file
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    for layer in source.layers:
        if layer.weights:
            layer.set_weights(expected[layer.name])
    path = tmp_path / IMAGENET_NOTOP_FILE
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, source)
    base = build_base("vgg16", str(path), 32)
    np.testing.assert_array_equal(base.get_layer("block5_conv3").get_weights()[0], expected["block5_conv3"][0])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Keras warns about each group it cannot match
def test_weights_file_of_another_architecture_is_rejected(vgg16_weights_file):
    path, _ = vgg16_weights_file
    with pytest.raises(WeightsError, match="does not fit"):
        build_base("vgg16_bn", str(path), 32)


@pytest.fixture
def offline_keras(monkeypatch, tmp_path):
    """An empty Keras home (KERAS_HOME is read at import, so set both) and a download that fails like offline."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(home))
    tried = []

    def no_network(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", no_network)
    return home, tried


def test_imagenet_offline_names_the_weights_file_and_where_to_put_it(offline_keras):
    home, tried = offline_keras
    with pytest.raises(WeightsError) as info:
        build_model(config(weights="imagenet"), num_classes=10)
    message = str(info.value)
    assert tried and tried[0].endswith(IMAGENET_NOTOP_FILE)
    assert IMAGENET_NOTOP_FILE == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert IMAGENET_NOTOP_FILE in message
    assert str(home / "models") in message
    assert "--weights none" in message


# ---------------------------------------------------------------- precision and loading


def test_bf16_is_scoped_to_the_model():
    before = keras.config.dtype_policy().name
    model = build_model(config(bf16=True, cut="block3_pool"), num_classes=10)
    assert keras.config.dtype_policy().name == before == "float32"
    assert model.get_layer("base").get_layer("block1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert model.output.dtype == "float32"
    assert build_model(config(cut="block3_pool"), num_classes=10).get_layer("base").get_layer("block1_conv1").dtype_policy.name == "float32"


def test_dtype_policy_is_restored_when_building_fails(tmp_path):
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError):
        build_model(config(bf16=True, weights=str(bad)), num_classes=10)
    assert keras.config.dtype_policy().name == "float32"


def test_load_model_round_trip_and_clear_errors(tmp_path):
    model = build_model(config(arch="vgg16_bn", cut="block3_pool"), num_classes=10)
    model.save(tmp_path / "m.keras")
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(load_model(tmp_path / "m.keras").predict_on_batch(x), model.predict_on_batch(x), atol=1e-5)
    with pytest.raises(ModelLoadError, match="not a .keras model file"):
        load_model(tmp_path / "m.h5")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "gone.keras")
    (tmp_path / "junk.keras").write_bytes(b"PK\x03\x04 junk")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        load_model(tmp_path / "junk.keras")
