"""Presets: named starting points for a run, shared by the Train page's "Start from" and `train --preset NAME`.

Each has a short key (the CLI's), a display name and a help text (the form's), and the
settings it changes from TrainConfig's defaults. Times and accuracies in the help texts
were measured on this project's 2-core CPU machine (README, "Results"), with the test
set's 10,000 images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from cifar_core.training import recipe
from cifar_core.training import start_choice
from cifar_core.config import ConfigError


@dataclass(frozen=True)
class Preset:
    name: str
    help: str
    settings: Callable[[], dict[str, Any]]  # called when used: a preset may name a file (the shipped model)


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        "Quick try (about 3½ minutes from the browser on a busy 2-core CPU, from scratch)",
        "A quarter-width VGG16-BN trained from scratch for 5 epochs on 1,000 images per class (only those are decoded): "
        "a first model, to see the whole loop work. Measured here through the browser: 3.5 minutes from 'Start training' "
        "to the result (2.7 of them in the training process), 62.3% test accuracy, while other work kept this 2-core "
        "machine busy (README, bench ui); the command line alone took 83 s on a less busy machine.",
        lambda: dict(recipe.QUICK_TRY)),
    "recipe": Preset(
        "Shipped model's recipe (~45 minutes on 2 CPU cores)",
        "Reproduces artifacts/default: a half-width VGG16-BN from scratch, 24 epochs with the airbench94-style recipe "
        "(one-cycle Nesterov SGD, weight decay 5e-3, label smoothing 0.2, alternating flips, 2-pixel shifts, test-time "
        "augmentation). Measured here: 88.9% test accuracy with TTA (87.7% without) in 44 minutes on 2 CPU cores.",
        lambda: dict(recipe.RECIPE)),
    "seed": Preset(
        "Seed notebook (VGG16 on ImageNet weights; needs internet)",
        "The seed notebook's settings: ImageNet VGG16, a flatten head, RMSprop at 1e-4, 15 + 20 epochs. "
        "Keras downloads the ImageNet weights on first use, so this needs internet (or the weights file).",
        dict),
    "yours": Preset(
        "Your images (from the shipped model)",
        "For a dataset of your own, any classes: starts from the shipped model's base (artifacts/default, trained on "
        "CIFAR-10's photos) and measures how much of it to reuse, since it helps on photos like CIFAR-10's and can hurt "
        "on other images. Short trials on your validation split (a new head on the frozen base; that head, then "
        "fine-tuning the whole base; the same network from scratch) pick the most accurate, which then trains for 30 "
        "epochs. The trials and the choice are shown with the run. No flips or mirrored test-time views: a mirrored "
        "digit or letter is another symbol. Measured here (README, Your images): on 5 CIFAR-10 classes with 50 images each "
        "it chose the head only (90.2% test accuracy; from scratch 42.7%), on scikit-learn's digits from scratch (99.4%; "
        "head only 69.2%).",
        start_choice.yours),
}


def names() -> list[str]:
    return list(PRESETS)


def preset_settings(key: str) -> dict[str, Any]:
    """A preset's settings; ConfigError listing the presets when `key` is none of them."""
    if key not in PRESETS:
        raise ConfigError({"preset": f"unknown preset {key!r}; the presets are: {', '.join(PRESETS)}"})
    return PRESETS[key].settings()
