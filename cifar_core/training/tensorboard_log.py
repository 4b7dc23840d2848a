"""A TensorBoard log in each run folder (`tensorboard --logdir artifacts/runs`), when tensorboard is installed.

Scalars per epoch (loss, accuracy, their validation values, the learning rate)
and every BATCH_EVERY training batches. Epochs and batches count across the
run's phases and across a resume, so the curves continue instead of restarting.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras

BATCH_EVERY = 20
LOG_FOLDER = "tensorboard"


def available() -> bool:
    """Whether the `tensorboard` package is installed (without it, runs simply have no log)."""
    return importlib.util.find_spec("tensorboard") is not None


class RunTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback, with the epochs and batches of earlier phases added to its steps."""

    def __init__(self, log_dir: Path, epoch_offset: int, steps_per_epoch: int):
        super().__init__(log_dir=str(log_dir), update_freq=BATCH_EVERY, write_graph=False, profile_batch=0)
        self.epoch_offset, self.steps_per_epoch = epoch_offset, steps_per_epoch

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        # Keras restarts its batch count at every fit; a resumed fit starts mid-phase.
        self._global_train_batch = (self.epoch_offset + epoch) * self.steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        # Keras writes epoch scalars under the last batch's record_if(step % update_freq == 0),
        # which would drop most epochs once batches are logged too.
        with self.summary.record_if(True):
            super().on_epoch_end(self.epoch_offset + epoch, logs)


def callbacks(run_dir: Path, epoch_offset: int, steps_per_epoch: int) -> list[keras.callbacks.Callback]:
    """[the run's TensorBoard callback], or [] when tensorboard is not installed."""
    if not available():
        return []
    return [RunTensorBoard(Path(run_dir) / LOG_FOLDER, epoch_offset, steps_per_epoch)]
