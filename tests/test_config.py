"""TrainConfig validation: one message per bad field, strict from_dict, JSON round trip."""

import json

import pytest

from cifar_core.config import ConfigError, TrainConfig


def errors_of(**values) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**values).validate()
    return info.value.errors


@pytest.mark.parametrize(
    "field, value",
    [
        ("lr", -0.1), ("lr", 0.0), ("finetune_lr", -1e-5), ("finetune_lr", 0),
        ("batch_size", 0), ("batch_size", -8),
        ("epochs_head", -1), ("epochs_finetune", -3),
    ],
)
def test_non_positive_numbers_are_named_with_their_value(field, value):
    errors = errors_of(weights="none", **{field: value})
    assert list(errors) == [field]
    assert repr(value) in errors[field]


def test_zero_epochs_in_both_phases_is_an_error():
    errors = errors_of(weights="none", epochs_head=0, epochs_finetune=0)
    assert "nothing to train" in errors["epochs_head"]


def test_unknown_arch_and_weights_list_the_choices():
    errors = errors_of(arch="resnet50", weights="imagenett")
    assert "'resnet50'" in errors["arch"] and "vgg16_bn" in errors["arch"]
    assert "'imagenett'" in errors["weights"] and "imagenet" in errors["weights"]


def test_vgg16_bn_has_no_imagenet_option():
    errors = errors_of(arch="vgg16_bn", weights="imagenet")
    assert list(errors) == ["weights"]
    assert "vgg16_bn" in errors["weights"]


def test_missing_data_dir_is_named(tmp_path):
    missing = tmp_path / "no-such-folder"
    errors = errors_of(weights="none", data_dir=str(missing))
    assert str(missing) in errors["data_dir"]


def test_every_bad_field_is_reported_at_once(tmp_path):
    errors = errors_of(lr=0.0, batch_size=0, epochs_head=-1, arch="x", data_dir=str(tmp_path / "gone"))
    assert set(errors) >= {"lr", "batch_size", "epochs_head", "arch", "data_dir"}
    message = str(ConfigError(errors))
    assert all(name in message for name in errors)


def test_non_numeric_values_are_reported_not_raised():
    errors = errors_of(weights="none", dropout="half", momentum=None, val_fraction="0.1")
    assert set(errors) == {"dropout", "momentum", "val_fraction"}
    assert "'half'" in errors["dropout"]


def test_weights_file_path_is_accepted(tmp_path):
    weights = tmp_path / "base.weights.h5"
    weights.write_bytes(b"x")
    assert TrainConfig(weights=str(weights)).validate().weights == str(weights)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({"weights": "none", "learning_rate": 0.1, "epochs": 3})
    assert set(info.value.errors) == {"learning_rate", "epochs"}


def test_json_round_trip(tmp_path):
    config = TrainConfig(
        data_dir=str(tmp_path), weights="none", arch="vgg16_bn", head="gap", head_units=(64, 32),
        limit=5, schedule="cosine", warmup_epochs=1, finetune_freeze="14", bf16=True,
    ).validate()
    again = TrainConfig.from_dict(json.loads(config.to_json()))
    assert again == config
    assert again.head_units == (64, 32)


def test_resolved_data_dir_prefers_config_then_env(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", "/env/cifar")
    assert TrainConfig(data_dir=str(tmp_path)).resolved_data_dir() == str(tmp_path)
    assert TrainConfig().resolved_data_dir() == "/env/cifar"
    monkeypatch.delenv("CIFAR10_DIR")
    assert TrainConfig().resolved_data_dir() is None
