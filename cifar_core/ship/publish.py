"""Publish a run as the shipped default model, with a model card.

`python -m cifar_core publish RUN` checks the run, copies its model and results
into a new folder beside `artifacts/default/`, writes MODEL_CARD.md from what
the run recorded (the exact command, the data, the wall time, the machine and
the test results), then swaps the new folder in.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import platform
import re
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path

from cifar_core.predict import calibration, ood
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.data import identity
from cifar_core.base import bounded_json
from cifar_core.data.classes import write_class_names
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.data.images import DataError
from cifar_core.predict.evaluate import Interpretation
from cifar_core.base.markup import markdown_literal
from cifar_core.base.paths import PROJECT_ROOT, default_model_dir
from cifar_core.runs.record import Run, RunError
from cifar_core.runs.store import RunStore

# renameat2(2): paths relative to the working directory; swap the two names.
AT_FDCWD = -100
RENAME_EXCHANGE = 2
RUN_FILES = ("model.keras",  # first: saved again, the others copied
             "config.json", "history.csv", "evaluation.json", "test_probs.npz", "train.log")


def train_command(config: dict) -> str:
    """The `python -m cifar_core train` command that reproduces `config` (flags that differ from the defaults)."""
    defaults = TrainConfig().to_dict()
    parts = ["python -m cifar_core train"]
    for name, value in config.items():
        if name not in defaults or value == defaults[name]:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list):
            parts.append(f"{flag} {' '.join(str(v) for v in value)}")
        else:
            parts.append(f"{flag} {value}")
    return " ".join(parts)


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}"


def calibration_section(stored: calibration.Calibration | None, interp: Interpretation, folder: str) -> str:
    """The model card's calibration paragraph: the temperature, where it was fitted, and what it does on the test split."""
    if stored is None:
        return ("Not calibrated: the run's validation images could not be loaded to fit a temperature, so every page shows "
                f"the model's probabilities as they are. Fit one with `python -m cifar_core calibrate --model {folder}`.")
    test = calibration.summary(interp.uncalibrated, interp.y, stored.temperature)
    views = "with its test-time augmentation" if stored.tta else "without test-time augmentation"
    return (f"Temperature **{stored.temperature:.4f}**, fitted by minimising the negative log-likelihood on the run's "
            f"{stored.images:,} validation images ({views}; never on the test split), stored in `calibration.json`: "
            f"the {stored.basis()}. "
            "Every page, `predict`, `evaluate` and the label-issue search apply it: probabilities become "
            "softmax(log p / T), which never changes the predicted class.\n\n"
            "| on the test split | uncalibrated | calibrated |\n|---|---|---|\n"
            f"| expected calibration error (15 equal-width bins) | {test['ece_uncalibrated']:.4f} | **{test['ece']:.4f}** |\n"
            f"| negative log-likelihood | {test['nll_uncalibrated']:.4f} | {test['nll']:.4f} |\n"
            f"| Brier score | {test['brier_uncalibrated']:.4f} | {test['brier']:.4f} |\n"
            f"| mean top-class confidence (accuracy {interp.accuracy:.2%}) | {test['mean_confidence_uncalibrated']:.2%} "
            f"| {test['mean_confidence']:.2%} |\n\n"
            f"Measured with `python -m cifar_core evaluate --model {folder}`; fitted with "
            f"`python -m cifar_core calibrate --model {folder}`.")


def run_calibration(run: Run) -> calibration.Calibration | None:
    """The run's stored temperature; for a run trained before runs were calibrated, fitted now on its
    validation split (and stored in the run); None when its data cannot be loaded."""
    return _stored_or_fitted(run, calibration.read, calibration.CalibrationError, calibration.fit_for_model)


def run_detector(run: Run) -> ood.Detector | None:
    """The run's stored "none of these" detector; for a run trained before runs had one, fitted now on its splits
    (and stored in the run); None when its data cannot be loaded."""
    return _stored_or_fitted(run, ood.read, ood.OODError, ood.fit_for_model)


def _stored_or_fitted(run: Run, read, damaged: type[Exception], fit):
    """What `read` finds in the run's folder (RunError when it is `damaged`), else what `fit` makes from the
    run's model and data, else None when its data cannot be loaded."""
    try:
        stored = read(run.dir)
    except damaged as err:
        raise RunError(f"Run {run.id} cannot be published: {err}") from err
    if stored is not None:
        return stored
    try:
        return fit(run.model_path, TrainConfig.of_saved_model(run.config))
    except (DataError, ConfigError):
        return None


def model_card(run: Run, interp: Interpretation, data_note: str, machine_note: str = "",
               stored: calibration.Calibration | None = None, folder: str = "artifacts/default") -> str:
    """MODEL_CARD.md text for a finished run (`stored`: its calibration; `folder`: where it is published)."""
    cfg = run.config
    summary = run.summary
    wall_min = (run.finished - run.started) / 60 if run.finished and run.started else float("nan")
    per_class = interp.per_class()
    # Class names are the user's text: literal in the card's Markdown (a "|" would split a table cell, an image would load).
    rows = "\n".join(f"| {markdown_literal(c)} | {r.recall:.1%} | {r.precision:.1%} | {r.f1:.3f} |" for c, r in per_class.iterrows())
    confused = "\n".join(f"- {markdown_literal(t)} predicted as {markdown_literal(p)}: {n}" for t, p, n in interp.most_confused()[:5])
    transfer = (
        "**Trained from scratch** (random initialisation, `--weights none`): no ImageNet transfer."
        if cfg.get("weights") == "none"
        else f"Base weights: `{cfg.get('weights')}`."
    )
    finished = datetime.fromtimestamp(run.finished, timezone.utc).strftime("%Y-%m-%d %H:%M UTC") if run.finished else "?"
    return f"""# Model card: default CIFAR-10 classifier

Run `{run.id}`, status {run.status}, finished {finished}.

## What it is
`{cfg.get('arch')}` base{f" at width {cfg.get('width')} (every block's filter count times {cfg.get('width')})" if cfg.get('width', 1.0) != 1.0 else ""} (cut at `{cfg.get('cut')}`) with a `{cfg.get('head')}` head
(dense {cfg.get('head_units')}, dropout {cfg.get('dropout')}), input {cfg.get('input_size')}x{cfg.get('input_size')} RGB.
{transfer}

## How it was trained
```
{train_command(cfg)}
```
- Data: {_relative(summary.get('data_source') or '')}. {data_note}
- Training images: {summary.get('train_images')}; validation (held out from train, stratified): {summary.get('val_images')}; test: {interp.y.size}.
- Epochs completed: {summary.get('epochs_completed')}; best validation accuracy {summary.get('best_val_accuracy', float('nan')):.2%} at epoch {summary.get('best_epoch')}.
- Wall time: {wall_min:.1f} minutes from start to finish (data loading, training and test evaluation).
- Machine: {machine_description()}. {machine_note}

## Results on the test split
{_accuracy_line(cfg, summary, interp)}

| class | accuracy (recall) | precision | F1 |
|---|---|---|---|
{rows}

Most confused pairs (true → predicted, count):
{confused}

## Calibration
{calibration_section(stored, interp, folder)}

![confusion matrix](confusion_matrix.png)

![training curves](curves.png)

## Files
`model.keras` (Keras 3, loads with `safe_mode=True`), `config.json`, `history.csv`
(per-epoch metrics), `classes.json` (the class names, in output order), `dataset_record.json` (the dataset it learned from: its name, the classes, a fingerprint of its files), `calibration.json` (the temperature), `ood.json` (the "none of these" detector), `evaluation.json`, `test_probs.npz` (test probabilities, uncalibrated, and labels), `train.log`.

## Limits
The model knows {len(interp.class_names)} classes ({', '.join(map(markdown_literal, interp.class_names))}, listed in `classes.json`);
anything else is squeezed into one of them, and flagged "none of these" only when it looks unlike the training images to the detector in `ood.json`. Photos are resized to 32x32 before classification.
"""


def _relative(text: str) -> str:
    """`text` with the paths inside this checkout's parent folder written from the checkout (`../shared/...`): a
    model card names no machine paths. A path is inside only by whole folder names: with the checkout in /tmp/ab,
    /tmp/abc/data is left as it is (plain string replacement once wrote it `..c/data`)."""
    parent = str(PROJECT_ROOT.parent).rstrip(os.sep) or os.sep
    if parent == os.sep:  # a checkout at the top of the file system: every path is "inside"; keep them as they are
        return text
    # Where the parent's path starts a path (not within a longer name) and ends at a folder boundary.
    boundary = re.compile(rf"(?<![\w.~/-]){re.escape(parent)}(?=/|$|[\s'\"`,;:)\]])")
    return boundary.sub("..", text)


def _shown_path(path: Path) -> str:
    """`path` as a command in the model card names it: relative to the project when inside it, from the checkout
    (`../x`) when inside its parent folder, else as it is."""
    resolved = Path(path).resolve()
    for base, prefix in ((PROJECT_ROOT, None), (PROJECT_ROOT.parent, "..")):
        try:
            inside = resolved.relative_to(base)  # by whole folder names, never by string prefix
        except ValueError:
            continue
        return str(Path(prefix, inside)) if prefix else str(inside)
    return str(resolved)


def _accuracy_line(cfg: dict, summary: dict, interp: Interpretation) -> str:
    correct = f"{int((interp.preds == interp.y).sum())} of {interp.y.size} images"
    if not cfg.get("tta"):
        return f"**Test accuracy: {interp.accuracy:.2%}** ({correct}), without test-time augmentation."
    plain = summary.get("test_accuracy_no_tta")
    return (f"**Test accuracy: {interp.accuracy:.2%}** ({correct}) with the model's test-time augmentation (the mean over "
            "the image, its mirror and both shifted by one pixel up-left and down-right; every page, `evaluate` and `predict` "
            "use it for this model)" + (f"; **{plain:.2%}** without it." if isinstance(plain, float) else "."))


def publish_run(store: RunStore, run_ref: str, dest: Path | None = None, data_note: str = "", machine_note: str = "") -> Path:
    """Publish a finished run into `dest` (default artifacts/default/) with figures and MODEL_CARD.md.

    The run is checked first (finished, every file present, the model loads), the
    new folder is built beside `dest`, then swapped in: `dest` is always wholly the
    old or wholly the new model, never half of each. RunError says why a run is refused.
    """
    from cifar_core.model.vgg import ModelLoadError, load_model

    run = store.resolve(run_ref)
    if run.status not in ("completed", "stopped"):
        raise RunError(f"Run {run.id} is {run.status}; only completed or stopped runs can be published.")
    if run.dir is None or not run.dir.is_dir():
        raise RunError(f"Run {run.id} cannot be published: its run folder is missing.")
    missing = [name for name in RUN_FILES if not (run.dir / name).is_file()]
    if missing:
        raise RunError(f"Run {run.id} cannot be published: {', '.join(missing)} missing from {run.dir}.")
    try:
        TrainConfig.from_dict(bounded_json.read(run.dir / "config.json"))
    except (OSError, ValueError, TypeError) as err:  # ConfigError and JSONDecodeError are ValueErrors
        raise RunError(f"Run {run.id} cannot be published: its config.json is not a valid training configuration ({err}).") from err
    try:
        model = load_model(run.model_path)  # without its optimizer: see below
        interp = Interpretation.load(run.dir)
    except ModelLoadError as err:
        raise RunError(f"Run {run.id} cannot be published: {err}") from err
    except (OSError, KeyError, ValueError) as err:
        raise RunError(f"Run {run.id} cannot be published: its test predictions cannot be read ({err}).") from err

    try:  # the dataset it learned from, or for a run from before records one inferred from its classes and settings
        record = identity.read_record(run.dir, run.config)
    except identity.RecordError as err:
        raise RunError(f"Run {run.id} cannot be published: {err}") from err
    stored = run_calibration(run)
    detector = run_detector(run)
    dest = Path(dest or default_model_dir())
    if dest.exists() and not dest.is_dir():
        raise RunError(f"Cannot publish to {dest}: it exists and is not a folder.")
    staging = dest.with_name(f".{dest.name}.new-{secrets.token_hex(4)}")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with _publish_lock(dest):
            _remove_stale_staging(dest)
            _build_and_swap(staging, dest, run, store, model, interp, (stored, detector), record, data_note, machine_note)
    except OSError as err:
        raise RunError(f"Could not publish run {run.id} to {dest} ({err.strerror or err}); {dest} is unchanged.") from err
    return dest


@contextlib.contextmanager
def _publish_lock(dest: Path):
    """One publish into `dest` at a time (an exclusive lock beside it), so staging folders left by a killed
    publish can be removed without touching a live one's."""
    with open(dest.with_name(f".{dest.name}.publish.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _remove_stale_staging(dest: Path) -> None:
    """Delete the staging folders a killed publish left beside `dest` (half-built, or holding the model it
    replaced). Only while `dest` exists: a publish killed inside swap_in's two-rename fallback leaves the
    models in .new-*/.old-* folders, and those are kept for a person to restore."""
    if dest.is_dir():
        for stale in dest.parent.glob(f".{dest.name}.new-*"):
            shutil.rmtree(stale, ignore_errors=True)


def _build_and_swap(staging: Path, dest: Path, run: Run, store: RunStore, model, interp: Interpretation,
                    fitted: tuple[calibration.Calibration | None, ood.Detector | None], record: identity.DatasetRecord,
                    data_note: str, machine_note: str) -> None:
    from cifar_core.views import plots

    stored, detector = fitted
    staging.mkdir()
    try:
        # Saved again as loaded, without the optimizer's state that the run's own
        # checkpoint keeps for resuming: half the size, and a published model is for use.
        model.save(staging / "model.keras")
        for name in RUN_FILES[1:]:
            shutil.copy2(run.dir / name, staging / name)
        write_class_names(staging, interp.class_names)
        identity.write_record(staging, record)
        if stored is not None:
            calibration.write(staging, stored)
        if detector is not None:
            ood.write(staging, detector)
        (staging / "confusion_matrix.png").write_bytes(plots.confusion_png(interp.confusion_matrix(), interp.class_names, normalized=False))
        (staging / "curves.png").write_bytes(plots.curves_png(store.metrics(run.id, "epoch")))
        atomic_write_text(staging / "MODEL_CARD.md", model_card(run, interp, data_note, machine_note, stored, _shown_path(dest)))
        swap_in(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # the unfinished folder, or the replaced one


def swap_in(new: Path, dest: Path) -> None:
    """Put folder `new` at `dest` in one step; afterwards `new` holds what `dest` held, if anything."""
    if not dest.exists():
        os.rename(new, dest)
        return
    if _exchange(new, dest):
        return
    # No atomic exchange on this filesystem: two renames, with `dest` absent for an instant between them.
    old = dest.with_name(f".{dest.name}.old-{secrets.token_hex(4)}")
    os.rename(dest, old)
    os.rename(new, dest)
    os.rename(old, new)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with Linux's renameat2(RENAME_EXCHANGE); False where that is unavailable."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))
