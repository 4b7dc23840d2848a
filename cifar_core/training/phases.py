"""A run's training phases: (1) the head on a frozen base, (2) fine-tuning, each compiled with its own
learning rate. The trainer and the "Your images" trials both train phases, so they live here, apart from both."""

from __future__ import annotations

from dataclasses import dataclass

import keras

from cifar_core.config import TrainConfig
from cifar_core.model.optimizer import make_optimizer


@dataclass
class Phase:
    name: str
    epochs: int
    lr: float
    freeze: str


def phases(config: TrainConfig) -> list[Phase]:
    """The phases a config asks for, in order, skipping those with 0 epochs."""
    planned = [
        Phase("head", config.epochs_head, config.lr, "all"),
        Phase("finetune", config.epochs_finetune, config.finetune_lr, config.finetune_freeze),
    ]
    return [p for p in planned if p.epochs > 0]


def compile_phase(model: keras.Model, config: TrainConfig, phase: Phase, steps: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, phase.lr, phase.epochs, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )
