"""The check a new run's data passes before the run is registered: shared by `train` and the Train page."""

from __future__ import annotations

import dataclasses

from cifar_core.config import ConfigError, TrainConfig
from cifar_core.data.health import blocking_message
from cifar_core.data.loader import match_classes, missing_classes


def check_training_data(config: TrainConfig) -> TrainConfig:
    """The config to start, its classes spelled as the data folder spells them (`match_classes`: "Cat" -> "cat");
    ConfigError when its data has a problem that blocks training (`blocking_message`: an empty class, a class
    missing from test/, a link loop...) or lacks a chosen class.

    Without a data folder (Keras' download), the classes are checked against CIFAR-10's.
    """
    data_dir = config.resolved_data_dir()
    if problem := blocking_message(data_dir):
        raise ConfigError({"data_dir": problem})
    if problem := missing_classes(data_dir, config.classes):
        raise ConfigError({"classes": problem})
    # Validated again: "cat Cat" names one class twice once spelled.
    return dataclasses.replace(config, classes=match_classes(data_dir, config.classes)).validate()
