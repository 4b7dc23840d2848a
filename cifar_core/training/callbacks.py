"""The training callbacks of one run, one job each, in the order `train` lists them:

- StopOnRequest: ends fit at the batch a stop was requested (`stop`, the dashboard's Stop button);
- RunLogger: streams batch and epoch metrics, rate and ETA into the run store (the dashboard's
  live curves read exactly what it writes) and counts the epochs completed;
- BestModelCheckpoint: saves the complete model when validation accuracy improves;
- CompletedEpochBackup: the resumable state (weights and optimizer) after every completed epoch.

A stop request reaches the others as Keras' own `model.stop_training`, set during a batch:
an epoch cut short that way is neither logged, checkpointed nor backed up.
"""

from __future__ import annotations

import math
import re
import time
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from cifar_core.base import compat
from cifar_core.base import faults
from cifar_core.base.atomic_io import atomic_save_model, atomic_write_bytes
from cifar_core.base.compat import weights_h5
from cifar_core.runs.store import RunStore

# Batch records are throttled: the dashboard refreshes every ~2 s, and one SQLite
# commit per batch would cost more than it shows.
BATCH_LOG_INTERVAL_S = 0.5
# The newest backup and the one before it: the fallback if the newest is damaged.
KEEP_BACKUPS = 2
BACKUP_RE = re.compile(r"epoch-(\d+)\.weights\.h5")


class StopOnRequest(keras.callbacks.Callback):
    """Stop fit after the batch during which a stop of run `run_id` was requested in `store`.

    `stopped` says afterwards whether it did. Put it before the callbacks that read
    `model.stop_training` at batch end (RunLogger), so they see the stop in that same batch.
    """

    def __init__(self, store: RunStore, run_id: str):
        super().__init__()
        self.store, self.run_id = store, run_id
        self.stopped = False

    def on_train_batch_end(self, batch, logs=None):
        if self.store.stop_requested(self.run_id):
            self.stopped = True
            self.model.stop_training = True


class RunLogger(keras.callbacks.Callback):
    """Write one phase's batch and epoch metrics to run `run_id` in `store`.

    Args:
        phase: "head" or "finetune".
        epoch_offset: epochs completed before this phase (so epochs count across phases).
        epochs: epochs planned in this phase; steps: batches per epoch; batch_size: for images/s.

    Batch records (throttled to one per BATCH_LOG_INTERVAL_S, plus each epoch's last
    batch and the batch a stop ended) carry the learning rate, images/s and ETA.
    `last_epoch` is the number of epochs of the run completed when fit returns.
    """

    def __init__(self, store: RunStore, run_id: str, *, phase: str, epoch_offset: int, epochs: int, steps: int,
                 batch_size: int):
        super().__init__()
        self.store, self.run_id, self.phase = store, run_id, phase
        self.epoch_offset, self.epochs, self.steps, self.batch_size = epoch_offset, epochs, steps, batch_size
        self.last_epoch = epoch_offset

    def _lr(self) -> float:
        return float(np.asarray(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_train_begin(self, logs=None):
        self.t_begin = self.t_rate = time.time()
        self.batches_done = 0
        self.last_batch_log = 0.0
        self.first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch:
            # `epoch` is where this fit starts: 0, or the epoch CompletedEpochBackup restored
            # after an interruption. Records past it belong to epochs that are about to be
            # run again (the interrupted one, or one logged just before its backup was
            # written), so drop them: the curves then continue without duplicates.
            self.first_epoch = False
            self.store.truncate_metrics(self.run_id, after_epoch=self.epoch_offset + epoch)
            self.last_epoch = self.epoch_offset + epoch
        self.epoch = epoch
        self.t_epoch = time.time()

    def on_train_end(self, logs=None):
        if self.first_epoch:
            # No epoch ran: the restored backup already held all of them (a kill after the
            # phase's last backup, before fit returned). Count them as done.
            self.last_epoch = self.epoch_offset + (compat.initial_epoch(self.model) or 0)

    def on_train_batch_end(self, batch, logs=None):
        self.batches_done += 1
        now = time.time()
        if self.batches_done == 1:
            # The first batch includes tracing and compilation: time the rate from its end.
            self.t_rate = now
        stopping = self.model.stop_training  # the last batch of a stopped run: always recorded
        if now - self.last_batch_log >= BATCH_LOG_INTERVAL_S or batch + 1 == self.steps or stopping:
            self.last_batch_log = now
            timed = self.batches_done - 1
            if timed and now > self.t_rate:
                rate = timed / (now - self.t_rate)
            else:  # only the first batch so far: a rough rate, compile time included
                rate = 1 / max(now - self.t_begin, 1e-9)
            remaining = (self.epochs - self.epoch) * self.steps - (batch + 1)
            values = {k: float(v) for k, v in (logs or {}).items()}
            values.update(
                batch=batch + 1,
                steps=self.steps,
                lr=self._lr(),  # schedules change it within an epoch; the live curves show it
                images_per_s=rate * self.batch_size,
                eta_s=remaining / rate if rate > 0 else math.nan,
                # What the rate was measured over: the page shows no ETA until it means something.
                rate_batches=timed,
                rate_seconds=now - self.t_rate,
                epochs=self.epoch_offset + self.epochs,
            )
            step = (self.epoch_offset + self.epoch) * self.steps + batch + 1
            self.store.log_metrics(self.run_id, "batch", self.phase, self.epoch_offset + self.epoch + 1, step, values)
        faults.point("batch")

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            return  # a partial epoch's validation numbers would be misleading
        epoch_no = self.epoch_offset + epoch + 1
        values = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        values.update(lr=self._lr(), seconds=time.time() - self.t_epoch)
        values["images_per_s"] = self.steps * self.batch_size / max(values["seconds"], 1e-9)
        self.store.log_metrics(self.run_id, "epoch", self.phase, epoch_no, epoch_no, values)
        self.last_epoch = epoch_no


class BestModelCheckpoint(keras.callbacks.Callback):
    """Save `full_model` to `path` whenever an epoch's `val_accuracy` beats `best`, and record it in
    run `run_id`'s summary (best_val_accuracy, best_epoch).

    `full_model` is the complete model: during the cached-feature head phase the model being
    fitted is only the head. `best` is the best val_accuracy of earlier phases, and is updated;
    `epoch_offset` the epochs completed before this phase. With no file at `path` yet, the
    first complete epoch is saved whatever its accuracy, so a run always has a model.
    """

    def __init__(self, store: RunStore, run_id: str, *, full_model: keras.Model, path: Path, best: float, epoch_offset: int):
        super().__init__()
        self.store, self.run_id = store, run_id
        self.full_model, self.path, self.best, self.epoch_offset = full_model, Path(path), best, epoch_offset

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            return  # stopped during this epoch: its validation numbers are of a partial epoch
        val_acc = float((logs or {}).get("val_accuracy", -math.inf))
        if val_acc > self.best or not self.path.exists():
            self.best = max(self.best, val_acc)
            atomic_save_model(self.full_model, self.path)
            self.store.update_summary(self.run_id, best_val_accuracy=self.best, best_epoch=self.epoch_offset + epoch + 1)


def try_load_weights(model: keras.Model, path: Path) -> str | None:
    """Load a weights file into `model` (and its optimizer); None if that worked, else why not.

    A file that fails half-way may already have overwritten some variables, so
    they are put back: the model is then exactly as it was.
    """
    optimizer = getattr(model, "optimizer", None)  # absent on a model never compiled
    variables = list(model.weights) + list(optimizer.variables if optimizer else [])
    before = [v.numpy() for v in variables]
    try:
        model.load_weights(path)
    except Exception as err:  # h5py and Keras report damaged files with many exception types
        for v, value in zip(variables, before):
            v.assign(value)
        return str(err) or type(err).__name__
    return None


class CompletedEpochBackup(keras.callbacks.Callback):
    """Back up the fitted model (weights and optimizer state) after each completed epoch,
    and restore the newest readable backup when fit starts.

    Keras' BackupAndRestore rewrites one file in place, so a kill or a full disk
    during the write leaves nothing to resume from. Here each backup is a new file,
    `epoch-NNNN.weights.h5`, made in memory, written under a temp name and renamed
    into place; the newest KEEP_BACKUPS stay. A backup that cannot be loaded (damaged later) makes
    way for the one before it, and with none readable the phase starts over; `note`
    says which happened, for train.log and the terminal.

    Keras still calls on_epoch_end for an epoch cut short by a stop request
    (`stop_training` set during its batches); backing that one up would make a
    resume skip the rest of the epoch. Put it before callbacks that set
    `stop_training` at epoch end (EarlyStopping), whose epochs are complete.
    """

    def __init__(self, backup_dir: Path, note: Callable[[str], None]):
        super().__init__()
        self.dir, self.note = Path(backup_dir), note

    def backups(self) -> list[tuple[int, Path]]:
        """(completed epochs, file) of every backup in the folder, newest first."""
        found = [(int(m[1]), p) for p in (self.dir.iterdir() if self.dir.is_dir() else ()) if (m := BACKUP_RE.fullmatch(p.name))]
        return sorted(found, reverse=True)

    def on_train_begin(self, logs=None):
        backups = self.backups()
        if not backups:
            return
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)  # its slots must exist to be loaded
        for epochs, path in backups:
            problem = try_load_weights(model, path)
            if problem:
                self.note(f"backup {path} cannot be read ({problem}); trying an older one")
                continue
            if path != backups[0][1]:
                self.note(f"resuming from the older backup {path.name} ({epochs} epoch(s) of this phase done)")
            compat.set_initial_epoch(model, epochs)  # where Keras' fit starts, as BackupAndRestore sets it
            return
        self.note(f"no readable backup in {self.dir}: this phase starts again from its first epoch")

    def on_epoch_end(self, epoch, logs=None):
        if self.model.stop_training:
            return
        data = weights_h5(self.model)
        faults.point("backup_write")
        atomic_write_bytes(self.dir / f"epoch-{epoch + 1:04d}.weights.h5", data)
        for _, old in self.backups()[KEEP_BACKUPS:]:
            old.unlink(missing_ok=True)
