"""Where a run's starting weights come from, read without importing Keras (the pages list runs often).

A resumed run rebuilds its model from its settings before it loads its last epoch,
so it needs its starting weights again: the ImageNet file, or the weights file or
trained model it started from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

IMAGENET_NOTOP_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"


def keras_models_dir() -> str:
    """Where Keras caches downloaded weights: $KERAS_HOME/models, else ~/.keras/models."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models")


def missing_start_weights(config: dict[str, Any]) -> str | None:
    """Why resuming a run with these settings would fail for lack of its starting weights, and what
    would fix it; None when they are at hand (or the run starts from scratch)."""
    weights = str(config.get("weights"))
    if weights == "none" or (weights == "imagenet" and config.get("arch") == "vgg16_bn"):
        return None  # from scratch (vgg16_bn has no ImageNet weights: such a config is refused anyway)
    if weights == "imagenet":
        folder = keras_models_dir()
        if Path(folder, IMAGENET_NOTOP_FILE).is_file():
            return None
        # Checked as a file only: the studio's machines have no internet, and Keras' download
        # failing again is what this resume would do.
        return (f"Resuming needs VGG16's ImageNet weights, and this machine does not have them ({IMAGENET_NOTOP_FILE} "
                f"is not in {folder}; Keras downloads it there only with internet). To resume, copy that file there from "
                "a machine that has it; or start a new run from these settings with Base weights 'none' and "
                "Architecture vgg16_bn (from scratch).")
    if not Path(weights).is_file():
        return (f"Resuming needs the weights this run started from, {weights}, which no longer exists. To resume, "
                "put the file back; or start a new run from these settings with other Base weights.")
    return None
