"""Two-phase training of one run: (1) head on a frozen base, (2) fine-tuning.

This follows the seed notebook and Keras' transfer-learning guide: train a new
classifier on a frozen VGG16, then unfreeze the top of the base and continue at a
lower learning rate. Either phase can be skipped (0 epochs).
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras

from cifar_core import data as data_lib
from cifar_core import distribute, evaluate, features
from cifar_core.callbacks import CompletedEpochBackup, RunStoreCallback, try_load_weights
from cifar_core.config import TrainConfig
from cifar_core.model import build_model, load_model, set_freeze
from cifar_core.paths import cache_dir
from cifar_core.runs import Run, RunStore, atomic_save_model, atomic_save_weights, error_text

Progress = Callable[[int, int, str], None]


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


def make_optimizer(config: TrainConfig, lr: float, epochs: int, steps: int) -> keras.optimizers.Optimizer:
    """The configured optimizer, with a cosine schedule (and linear warmup) when asked for."""
    rate: float | keras.optimizers.schedules.LearningRateSchedule = lr
    if config.schedule == "cosine":
        warmup = min(config.warmup_epochs, max(epochs - 1, 0)) * steps
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr,
            decay_steps=max(epochs * steps - warmup, 1),
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    wd = config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.momentum, nesterov=True, weight_decay=wd)
    if config.optimizer == "adam":
        return keras.optimizers.AdamW(rate, weight_decay=wd) if wd else keras.optimizers.Adam(rate)
    return keras.optimizers.RMSprop(rate, weight_decay=wd)


def compile_phase(model: keras.Model, config: TrainConfig, phase: Phase, steps: int) -> None:
    model.compile(
        optimizer=make_optimizer(config, phase.lr, phase.epochs, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
        metrics=["accuracy"],
    )


def _run_logger(run: Run, echo: Callable[[str], None] | None) -> logging.Logger:
    logger = logging.getLogger(f"cifar_core.run.{run.id}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = logging.FileHandler(run.dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    if echo:
        logger.addHandler(_EchoHandler(echo))
    return logger


class _EchoHandler(logging.Handler):
    def __init__(self, echo: Callable[[str], None]):
        super().__init__()
        self.echo = echo

    def emit(self, record: logging.LogRecord) -> None:
        self.echo(record.getMessage())


def train(
    config: TrainConfig,
    *,
    store: RunStore | None = None,
    run_id: str | None = None,
    resume: bool = False,
    progress: Progress | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict:
    """Train one run end to end and return its summary.

    `run_id` names a run created beforehand (by the launcher, or the run to
    resume); otherwise a new one is registered. Errors mark the run failed, are
    logged to its train.log and re-raised. A non-chief worker of a multi-worker
    training registers nothing: see `_train_non_chief`.
    """
    config.validate()
    if config.strategy == "multiworker" and not distribute.is_chief():
        return _train_non_chief(config, progress, echo)
    store = store or RunStore()
    if run_id:
        store.check_writable()  # new runs are checked by create()
        run = store.get(run_id)
        store.mark_running(run.id)
    else:
        run = store.create(config)
    return _train_logged(config, store, run, resume, progress, echo)


def _train_non_chief(config: TrainConfig, progress: Progress | None, echo: Callable[[str], None] | None) -> dict:
    """Train as a non-chief worker: in lockstep with the chief, into a throwaway store.

    Every worker must run the same steps, including the checkpoint saves (Keras
    saves under a strategy on every worker), but only the chief's run is real: a
    worker's run row, checkpoints and logs go to a temp folder deleted at the end.
    """
    kind, index = distribute.worker_task()
    scratch = Path(tempfile.mkdtemp(prefix=f"cifar-{kind}{index}-"))
    try:
        store = RunStore(scratch)
        summary = _train_logged(config, store, store.create(config, exclusive=False), False, progress, echo)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {**summary, "run_id": None, "run_dir": None, "worker": f"{kind}:{index}"}


def _train_logged(config: TrainConfig, store: RunStore, run: Run, resume: bool, progress: Progress | None,
                  echo: Callable[[str], None] | None) -> dict:
    log = _run_logger(run, echo)
    try:
        return _train(config, store, run, resume, progress, log)
    except BaseException as err:
        # exc_info: the traceback goes to train.log, while the echoed line (the CLI's
        # stderr) stays one readable message for expected errors such as bad data.
        log.error("training failed: %s", error_text(err, run.id), exc_info=True)
        status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        store.finish(run.id, status, summary=store.get(run.id).summary, error=error_text(err, run.id))
        raise
    finally:
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)


def _train(config: TrainConfig, store: RunStore, run: Run, resume: bool, progress: Progress | None, log: logging.Logger) -> dict:
    # First: MultiWorkerMirroredStrategy must exist before any other TensorFlow op.
    strategy = distribute.make_strategy(config.strategy)
    keras.utils.set_random_seed(config.seed)
    log.info("run %s: %s", run.id, config.to_json().replace("\n", " "))
    data = data_lib.load_cifar10(config.resolved_data_dir(), skip_bad=config.skip_bad, progress=progress)
    if data.skipped:
        log.info("skipped %d unreadable file(s); first: %s", len(data.skipped), data.skipped[0])
    splits = data_lib.make_splits(data, val_fraction=config.val_fraction, seed=config.seed, limit=config.limit)
    log.info("data: %s; train %d, val %d, test %d", data.source, len(splits.x_train), len(splits.x_val), len(splits.x_test))

    with strategy.scope():
        model = build_model(config)
    distribute.prepare_model(model, strategy)
    base, head = model.get_layer("base"), model.get_layer("head")
    checkpoint = run.dir / "model.keras"
    summary = dict(run.summary) if resume else {}
    summary.update(train_images=len(splits.x_train), val_images=len(splits.x_val), skipped_files=len(data.skipped), data_source=data.source)
    store.update_summary(run.id, **summary)
    best = summary.get("best_val_accuracy", -math.inf)
    epoch_offset = 0
    stopped = False
    train_ds = val_ds = None

    for phase in phases(config):
        done = summary.get("phase_epochs", {})
        weights_file = run.dir / f"after_{phase.name}.weights.h5"
        if resume and phase.name in done and weights_file.is_file():
            if (problem := try_load_weights(model, weights_file)) is None:
                epoch_offset += done[phase.name]
                log.info("phase %s already completed; resuming after it", phase.name)
                continue
            log.warning("the weights saved after phase %s cannot be read (%s): it runs again, and so do the phases after it", phase.name, problem)
            resume = False
        with strategy.scope():
            set_freeze(base, phase.freeze)
        steps = math.ceil(len(splits.x_train) / config.batch_size)
        use_features = (
            phase.freeze == "all"
            and not config.augment
            and config.feature_cache
            and config.strategy == "default"
            and features.feature_bytes(base, len(splits.x_train) + len(splits.x_val)) <= features.MAX_CACHE_BYTES
        )
        fitted = head if use_features else model
        # BackupAndRestore sets `_initial_epoch` when it restores and Keras never clears
        # it, so the next phase's fit on the same model would skip that many epochs.
        fitted._initial_epoch = None
        backup = run.dir / "backup" / phase.name
        with strategy.scope():
            compile_phase(fitted, config, phase, steps)
        store_cb = RunStoreCallback(
            store, run.id, phase=phase.name, full_model=model, checkpoint=checkpoint, best=best,
            epoch_offset=epoch_offset, epochs=phase.epochs, steps=steps, batch_size=config.batch_size,
        )
        callbacks: list[keras.callbacks.Callback] = [
            # store_cb before the backup: an epoch is logged, then backed up. A kill
            # between the two re-runs that epoch, and store_cb drops its old record;
            # the other order would leave a gap in the curves instead.
            store_cb,
            # Kept when fit ends, so that a stopped run resumes from its last epoch too;
            # removed below once the phase is complete.
            CompletedEpochBackup(backup, note=log.warning),
            keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs, p=phase, o=epoch_offset: log.info(
                "[%s] epoch %d: %s", p.name, o + e + 1, " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()))),
        ]
        if config.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience, restore_best_weights=True))
        if config.schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2 or 2)))

        log.info("phase %s: %d epoch(s) at lr %g, freeze=%s, %s", phase.name, phase.epochs, phase.lr, phase.freeze,
                 "on cached base features" if use_features else "on live images")
        if use_features:
            cache = cache_dir()
            f_train = features.cached_features(base, splits.x_train, input_size=config.input_size, cache_dir=cache, progress=progress)
            f_val = features.cached_features(base, splits.x_val, input_size=config.input_size, cache_dir=cache, progress=progress)
            head.fit(
                data_lib.batched(f_train, data_lib.one_hot(splits.y_train), config.batch_size, training=True, seed=config.seed),
                validation_data=data_lib.batched(f_val, data_lib.one_hot(splits.y_val), config.batch_size, training=False),
                epochs=phase.epochs, shuffle=False, callbacks=callbacks, verbose=0,  # batched() shuffles
            )
        else:
            if train_ds is None:
                train_ds = distribute.shard_by_data(data_lib.make_dataset(
                    splits.x_train, splits.y_train, config.batch_size, training=True,
                    augment=config.augment, input_size=config.input_size, seed=config.seed))
                val_ds = distribute.shard_by_data(data_lib.make_dataset(
                    splits.x_val, splits.y_val, config.batch_size, training=False, input_size=config.input_size))
            # shuffle=False: the tf.data pipeline already reshuffles every epoch.
            model.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, shuffle=False, callbacks=callbacks, verbose=0)

        best = store_cb.best
        ran = store_cb.last_epoch - epoch_offset
        epoch_offset = store_cb.last_epoch
        if store_cb.stopped:
            stopped = True
            log.info("stop requested: phase %s stopped after %d complete epoch(s)", phase.name, ran)
            break
        summary.setdefault("phase_epochs", {})[phase.name] = ran
        atomic_save_weights(model, weights_file)
        store.update_summary(run.id, phase_epochs=summary["phase_epochs"])
        shutil.rmtree(backup, ignore_errors=True)

    if not checkpoint.exists():
        atomic_save_model(model, checkpoint)  # stopped before any epoch ended: keep what there is
    summary.update(store.get(run.id).summary)
    summary.update(epochs_completed=epoch_offset)

    best_model = load_model(checkpoint)
    interp = evaluate.evaluate_model(best_model, splits.x_test, splits.y_test, input_size=config.input_size, progress=progress)
    interp.save(run.dir)
    store.metrics(run.id, "epoch").to_csv(run.dir / "history.csv", index=False)
    summary.update(test_accuracy=interp.accuracy, val_accuracy=summary.get("best_val_accuracy"))
    status = "stopped" if stopped else "completed"
    store.finish(run.id, status, summary=summary)
    log.info("run %s %s: best val_accuracy %.4f, test accuracy %.4f", run.id, status, summary.get("val_accuracy") or float("nan"), interp.accuracy)
    return {"run_id": run.id, "run_dir": str(run.dir), "status": status, **summary}
