"""Two-phase training of one run: (1) head on a frozen base, (2) fine-tuning.

This follows the seed notebook and Keras' transfer-learning guide: train a new
classifier on a frozen VGG16, then unfreeze the top of the base and continue at a
lower learning rate. Either phase can be skipped (0 epochs).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import keras

from cifar_core.predict import calibration, model_outputs, ood
from cifar_core.base import compat
from cifar_core.training import distribute
from cifar_core.predict import evaluate
from cifar_core.model import forward
from cifar_core.predict.model_data import load_model_data
from cifar_core.model import frozen_features as features
from cifar_core.training import start_choice
from cifar_core.training import tensorboard_log
from cifar_core.data import pipeline
from cifar_core.data.splits import Splits
from cifar_core.base.atomic_io import atomic_save_model, atomic_save_weights
from cifar_core.training.callbacks import BestModelCheckpoint, CompletedEpochBackup, RunLogger, StopOnRequest, try_load_weights
from cifar_core.data import identity
from cifar_core.data.classes import write_class_names
from cifar_core.config import TrainConfig
from cifar_core.model.ema import ema_callbacks
from cifar_core.model.vgg import batchnorm_momentum, build_model, load_model, set_freeze
from cifar_core.training.phases import Phase, compile_phase, phases
from cifar_core.runs.outcome import did_not_learn, likely_reasons
from cifar_core.base.paths import cache_dir
from cifar_core.base.errors import error_text
from cifar_core.base.hardware import native_bf16
from cifar_core.runs.record import Run
from cifar_core.runs.store import RunStore

Progress = Callable[[int, int, str], None]


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
    registered: Callable[[Run], None] | None = None,
) -> dict:
    """Train one run end to end and return its summary.

    `run_id` names a run created beforehand (by the launcher, or the run to
    resume); otherwise a new one is registered. `registered` is called with the
    run as soon as it is known, so a caller can name it even if the run index
    cannot be read when training fails (a full disk). Errors mark the run failed, are
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
    if registered:
        registered(run)
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
        log.error("training failed: %s", error_text(err, run.id, store.root), exc_info=True)
        status = "stopped" if isinstance(err, KeyboardInterrupt) else "failed"
        store.finish(run.id, status, summary=store.get(run.id).summary, error=error_text(err, run.id, store.root))
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
    if config.bf16 and not native_bf16():
        log.info("bfloat16 asked for, but this machine only emulates it (no GPU, no AVX512-BF16 or AMX): "
                 "training in float32, which is faster here")
        config = dataclasses.replace(config, bf16=False)
    stage = StageReporter(store, run.id, progress)
    splits, summary = _load_data(config, store, run, resume, stage, log)
    if config.measure_start:
        config = _measured_start(config, store, run, splits, summary, stage, log)
    stage("building the model")
    steps = math.ceil(len(splits.x_train) / config.batch_size)
    with strategy.scope():
        model = build_model(config, batchnorm_momentum(steps), num_classes=len(splits.class_names))
    distribute.prepare_model(model, strategy)
    summary.update(steps_per_epoch=steps)
    store.update_summary(run.id, steps_per_epoch=steps)
    stopped = _run_phases(config, store, run, model, splits, summary, strategy, steps, resume, stage, log)
    return _finish(config, store, run, model, splits, summary, stopped, stage, log)


def _measured_start(config: TrainConfig, store: RunStore, run: Run, splits: Splits, summary: dict,
                    stage: "StageReporter", log: logging.Logger) -> TrainConfig:
    """The settings of the start chosen by measuring (start_choice); a resumed run keeps the choice it made."""
    choice = summary.get("start_choice") or start_choice.measure(config, splits, stage, log, StopOnRequest(store, run.id))
    summary["start_choice"] = choice
    store.update_summary(run.id, start_choice=choice)
    keras.utils.set_random_seed(config.seed)  # the chosen start then trains as it would in a run of its own
    return start_choice.settings(config, choice["changes"])


class StageReporter:
    """Tells the run store (hence the dashboard) and the CLI's progress bars which stage a run is in.

    Calls with a count are throttled: the store is written at most every half second.
    """

    def __init__(self, store: RunStore, run_id: str, progress: Progress | None):
        self.store, self.run_id, self.progress = store, run_id, progress
        self.last_write = 0.0
        self.name, self.since = "", 0.0

    def __call__(self, name: str, done: int | None = None, total: int | None = None) -> None:
        if self.progress and total:
            self.progress(done or 0, total, name)
        now = time.time()
        if name != self.name:
            self.name, self.since = name, now  # the stage's start, for its rate and ETA
        if total is None or done in (0, total) or now - self.last_write >= 0.5:
            self.last_write = now
            self.store.update_summary(self.run_id, stage={"name": name, "done": done, "total": total, "since": self.since, "ts": now})

    def counter(self, name: str) -> Progress:
        """A progress callback that reports `name` (the data loader's and evaluator's own label is kept as detail)."""
        return lambda done, total, what: self(f"{name}: {what}", done, total)


def _load_data(config: TrainConfig, store: RunStore, run: Run, resume: bool, stage: StageReporter,
               log: logging.Logger) -> tuple[Splits, dict]:
    """The run's train/val/test splits, and its summary so far (kept on resume)."""
    stage("loading the data")
    loaded = load_model_data(config.resolved_data_dir(), config.classes, skip_bad=config.skip_bad, limit=config.limit,
                             progress=stage.counter("loading the data"), splits_of=config, in_data_order=True)
    data, splits = loaded.data, loaded.splits
    if data.skipped:
        log.info("skipped %d unreadable file(s); first: %s", len(data.skipped), data.skipped[0])
    # Written before training: a stopped run's checkpoint is a usable model too.
    write_class_names(run.dir, data.class_names)
    log.info("data: %s; train %d, val %d, test %d", data.source, len(splits.x_train), len(splits.x_val), len(splits.x_test))
    summary = dict(run.summary) if resume else {}
    summary.pop("stage", None)
    summary.update(train_images=len(splits.x_train), val_images=len(splits.x_val), test_images=len(splits.x_test),
                   skipped_files=len(data.skipped), data_source=data.source, class_names=list(data.class_names))
    store.update_summary(run.id, **summary)
    return splits, summary


def _run_phases(config: TrainConfig, store: RunStore, run: Run, model: keras.Model, splits: Splits, summary: dict,
                strategy, steps: int, resume: bool, stage: StageReporter, log: logging.Logger) -> bool:
    """Train each planned phase in turn (skipping those a resumed run completed); True if stopped on request."""
    base, head = model.get_layer("base"), model.get_layer("head")
    checkpoint = run.dir / "model.keras"
    best = summary.get("best_val_accuracy", -math.inf)
    epoch_offset = 0
    plan = phases(config)
    for number, phase in enumerate(plan, start=1):
        done = summary.get("phase_epochs", {})
        weights_file = run.dir / f"after_{phase.name}.weights.h5"
        if resume and phase.name in done and weights_file.is_file():
            if (problem := try_load_weights(model, weights_file)) is None:
                epoch_offset += done[phase.name]
                log.info("phase %s already completed; resuming after it", phase.name)
                continue
            log.warning("the weights saved after phase %s cannot be read (%s): it runs again, and so do the phases after it", phase.name, problem)
            resume = False
        stage(f"phase {number}/{len(plan)} ({phase.name}): preparing")
        with strategy.scope():
            set_freeze(base, phase.freeze)
        use_features = _on_cached_features(config, phase, base, splits)
        fitted = head if use_features else model
        compat.set_initial_epoch(fitted, None)  # a restore in the previous phase must not skip epochs here
        backup = run.dir / "backup" / phase.name
        with strategy.scope():
            compile_phase(fitted, config, phase, steps)
        stop = StopOnRequest(store, run.id)
        logger = RunLogger(store, run.id, phase=phase.name, epoch_offset=epoch_offset, epochs=phase.epochs, steps=steps,
                           batch_size=config.batch_size)
        best_model = BestModelCheckpoint(store, run.id, full_model=model, path=checkpoint, best=best, epoch_offset=epoch_offset)
        callbacks = _phase_callbacks(config, phase, stop=stop, logger=logger, best_model=best_model, backup=backup,
                                     run_dir=run.dir, splits=splits, log=log)
        log.info("phase %s: %d epoch(s) at lr %g, freeze=%s, %s", phase.name, phase.epochs, phase.lr, phase.freeze,
                 "on cached base features" if use_features else "on live images")
        stage(f"phase {number}/{len(plan)} ({phase.name})")
        if use_features:
            _fit_head_on_features(config, base, head, splits, phase, steps, callbacks, stage)
        else:
            _fit_on_images(config, model, splits, phase, steps, epoch_offset, callbacks)

        best = best_model.best
        ran = logger.last_epoch - epoch_offset
        epoch_offset = logger.last_epoch
        summary.update(epochs_completed=epoch_offset)
        if stop.stopped:
            log.info("stop requested: phase %s stopped after %d complete epoch(s)", phase.name, ran)
            return True
        summary.setdefault("phase_epochs", {})[phase.name] = ran
        atomic_save_weights(model, weights_file)
        store.update_summary(run.id, phase_epochs=summary["phase_epochs"])
        shutil.rmtree(backup, ignore_errors=True)
    summary.update(epochs_completed=epoch_offset)
    return False


def _on_cached_features(config: TrainConfig, phase: Phase, base: keras.Model, splits: Splits) -> bool:
    """Whether `phase` trains the head on cached frozen-base features: the base is frozen, the images are not
    augmented, the cache is on, one machine trains, and the features are small enough to keep."""
    return (
        phase.freeze == "all"
        and not config.augment
        and config.feature_cache
        and config.strategy == "default"
        and features.fits_cache(base, len(splits.x_train) + len(splits.x_val))
    )


def _fit_on_images(config: TrainConfig, model: keras.Model, splits: Splits, phase: Phase, steps: int,
                   epoch_offset: int, callbacks: list) -> None:
    """One phase on live images (augmented as configured), sharded by data under a distribution strategy."""
    train_ds = distribute.shard_by_data(pipeline.training_stream(
        splits.x_train, splits.y_train, config.batch_size, flip=config.flip if config.augment else "none",
        translate=config.translate if config.augment else 0, input_size=config.input_size,
        seed=config.seed, first_epoch=epoch_offset, num_classes=len(splits.class_names)))
    val_ds = distribute.shard_by_data(pipeline.make_dataset(
        splits.x_val, splits.y_val, config.batch_size, training=False, input_size=config.input_size,
        num_classes=len(splits.class_names)))
    # shuffle=False: the tf.data pipeline already reshuffles every epoch.
    model.fit(train_ds, validation_data=val_ds, epochs=phase.epochs, steps_per_epoch=steps, shuffle=False,
              callbacks=callbacks, verbose=0)


def _phase_callbacks(config: TrainConfig, phase: Phase, *, stop: StopOnRequest, logger: RunLogger, best_model: BestModelCheckpoint,
                     backup: Path, run_dir: Path, splits: Splits, log: logging.Logger) -> list[keras.callbacks.Callback]:
    epoch_offset = logger.epoch_offset
    callbacks: list[keras.callbacks.Callback] = [
        # First, so that best_model checkpoints the averaged weights that were validated. The
        # backup then holds them too, and a resumed run continues from the average: a small
        # step aside from an uninterrupted run, which never loses an epoch.
        *ema_callbacks(config, best_model.full_model, splits.x_train, splits.y_train),
        # Before the callbacks that read its `stop_training` in the same batch and epoch.
        stop,
        # The logger before the backup: an epoch is logged, then backed up. A kill
        # between the two re-runs that epoch, and the logger drops its old record;
        # the other order would leave a gap in the curves instead.
        logger,
        best_model,
        # Kept when fit ends, so that a stopped run resumes from its last epoch too;
        # removed once the phase is complete.
        CompletedEpochBackup(backup, note=log.warning),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: log.info(
            "[%s] epoch %d: %s", phase.name, epoch_offset + e + 1, " ".join(f"{k}={v:.4f}" for k, v in (logs or {}).items()))),
    ]
    if config.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=config.patience, restore_best_weights=True))
    if config.schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=max(1, config.patience // 2 or 2)))
    callbacks += tensorboard_log.callbacks(run_dir, epoch_offset, logger.steps)
    return callbacks


def _fit_head_on_features(config: TrainConfig, base: keras.Model, head: keras.Model, splits: Splits, phase: Phase,
                          steps: int, callbacks: list, stage: StageReporter) -> None:
    """Phase 1 on cached frozen-base features: the base runs once, not every epoch."""
    cache = cache_dir()
    counter = stage.counter("computing the frozen base's features")
    f_train = features.cached_base_features(base, splits.x_train, input_size=config.input_size, cache_dir=cache, progress=counter)
    f_val = features.cached_base_features(base, splits.x_val, input_size=config.input_size, cache_dir=cache, progress=counter)
    head.fit(
        pipeline.feature_stream(f_train, splits.y_train, config.batch_size, seed=config.seed, num_classes=len(splits.class_names)),
        validation_data=pipeline.batched(f_val, pipeline.one_hot(splits.y_val, len(splits.class_names)), config.batch_size, training=False),
        epochs=phase.epochs, steps_per_epoch=steps, shuffle=False, callbacks=callbacks, verbose=0,  # the stream shuffles
    )


def _calibrate(config: TrainConfig, run: Run, model: keras.Model, splits: Splits, interp: evaluate.Interpretation,
               summary: dict, stage: StageReporter, log: logging.Logger) -> model_outputs.Outputs | None:
    """Fit the model's temperature on the validation split (with its TTA; never the test split), store it beside the
    model, record the test split's calibration error without and with it; return the validation outputs (or None)."""
    if not len(splits.y_val):
        log.info("calibration skipped: no validation images to fit a temperature on")
        return None
    counter = stage.counter("calibrating on the validation split")
    val = model_outputs.batch_outputs(model, splits.x_val, input_size=config.input_size, tta=config.tta, progress=counter)
    probs = val.probs if val else forward.predict_probs(model, splits.x_val, input_size=config.input_size, tta=config.tta, progress=counter)
    fitted = calibration.fit(probs, splits.y_val, tta=config.tta)
    calibration.write(run.dir, fitted)
    test = calibration.summary(interp.probs, interp.y, fitted.temperature)
    summary.update(temperature=fitted.temperature, test_ece=test["ece"], test_ece_uncalibrated=test["ece_uncalibrated"])
    log.info("calibration: %s; test ECE %.4f uncalibrated, %.4f calibrated", fitted.basis(), test["ece_uncalibrated"], test["ece"])
    return val


def _finish(config: TrainConfig, store: RunStore, run: Run, model: keras.Model, splits: Splits, summary: dict,
            stopped: bool, stage: StageReporter, log: logging.Logger) -> dict:
    """Evaluate the best model on the test set, save the results, and mark the run final."""
    checkpoint = run.dir / "model.keras"
    if not checkpoint.exists():
        stage("saving the model")
        atomic_save_model(model, checkpoint)  # stopped before any epoch ended: keep what there is
    epochs_completed = summary.get("epochs_completed", 0)
    summary.update(store.get(run.id).summary)
    summary.update(epochs_completed=epochs_completed)
    best_model = load_model(checkpoint)
    evaluating = stage.counter("evaluating the best model on the test set" + (" (stopped on request)" if stopped else ""))
    if config.tta:  # the model card reports both; the run's own accuracy is the one its users get
        plain = evaluate.evaluate_model(best_model, splits.x_test, splits.y_test, input_size=config.input_size, progress=evaluating,
                                        class_names=splits.class_names)
        summary.update(test_accuracy_no_tta=plain.accuracy)
    interp = evaluate.evaluate_model(best_model, splits.x_test, splits.y_test, input_size=config.input_size, tta=config.tta,
                                     progress=evaluating, class_names=splits.class_names)
    val = _calibrate(config, run, best_model, splits, interp, summary, stage, log)
    log.info("'none of these': %s", ood.fit_and_write(run.dir, best_model, splits, tta=config.tta, val=val, seed=config.seed,
                                                      progress=stage.counter("fitting the 'none of these' threshold")))
    stage("saving the results")
    interp.save(run.dir)
    # The dataset the model learned from (name, classes in output order, fingerprint), beside the model: what the
    # default model of each dataset is chosen by.
    identity.write_record(run.dir, identity.record_for(config.resolved_data_dir(), splits.class_names))
    store.metrics(run.id, "epoch").to_csv(run.dir / "history.csv", index=False)
    summary.update(test_accuracy=interp.accuracy, val_accuracy=summary.get("best_val_accuracy"))
    if did_not_learn(summary.get("val_accuracy"), len(splits.class_names)):
        summary["did_not_learn"] = likely_reasons(config.to_dict(), summary)
        log.info("did not learn: validation accuracy %.1f%% is at chance level; likely: %s",
                 100 * (summary["val_accuracy"] or 0), "; ".join(summary["did_not_learn"]))
    summary.pop("stage", None)
    status = "stopped" if stopped else "completed"
    store.finish(run.id, status, summary=summary)
    log.info("run %s %s: best val_accuracy %.4f, test accuracy %.4f", run.id, status, summary.get("val_accuracy") or float("nan"), interp.accuracy)
    return {"run_id": run.id, "run_dir": str(run.dir), "status": status, **summary}
