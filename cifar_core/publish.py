"""Publish a run as the shipped default model, with a model card.

`python -m cifar_core publish RUN` copies the run's model and results into
`artifacts/default/` and writes MODEL_CARD.md from what the run recorded: the
exact command, the data, the wall time, the machine and the test results.
"""

from __future__ import annotations

import os
import platform
import shutil
from datetime import datetime, timezone
from pathlib import Path

from cifar_core import CLASS_NAMES
from cifar_core.config import TrainConfig
from cifar_core.evaluate import Interpretation
from cifar_core.paths import default_model_dir
from cifar_core.runs import Run, RunStore, atomic_write_text

RUN_FILES = ("model.keras", "config.json", "history.csv", "evaluation.json", "test_probs.npz", "train.log")


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


def model_card(run: Run, interp: Interpretation, data_note: str, machine_note: str = "") -> str:
    """MODEL_CARD.md text for a finished run."""
    cfg = run.config
    summary = run.summary
    wall_min = (run.finished - run.started) / 60 if run.finished and run.started else float("nan")
    per_class = interp.per_class()
    rows = "\n".join(f"| {c} | {r.recall:.1%} | {r.precision:.1%} | {r.f1:.3f} |" for c, r in per_class.iterrows())
    confused = "\n".join(f"- {t} predicted as {p}: {n}" for t, p, n in interp.most_confused()[:5])
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
- Data: {summary.get('data_source')}. {data_note}
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

![confusion matrix](confusion_matrix.png)

![training curves](curves.png)

## Files
`model.keras` (Keras 3, loads with `safe_mode=True`), `config.json`, `history.csv`
(per-epoch metrics), `evaluation.json`, `test_probs.npz` (test probabilities and labels), `train.log`.

## Limits
CIFAR-10 images are 32x32 and of ten classes ({', '.join(CLASS_NAMES)}); anything
else is squeezed into one of them. Photos are resized to 32x32 before classification.
"""


def _accuracy_line(cfg: dict, summary: dict, interp: Interpretation) -> str:
    correct = f"{int((interp.preds == interp.y).sum())} of {interp.y.size} images"
    if not cfg.get("tta"):
        return f"**Test accuracy: {interp.accuracy:.2%}** ({correct}), without test-time augmentation."
    plain = summary.get("test_accuracy_no_tta")
    return (f"**Test accuracy: {interp.accuracy:.2%}** ({correct}) with the model's test-time augmentation (the mean over "
            "the image, its mirror and both shifted by one pixel up-left and down-right; every page, `evaluate` and `predict` "
            "use it for this model)" + (f"; **{plain:.2%}** without it." if isinstance(plain, float) else "."))


def publish_run(store: RunStore, run_ref: str, dest: Path | None = None, data_note: str = "", machine_note: str = "") -> Path:
    """Copy a finished run into `dest` (default artifacts/default/) with figures and MODEL_CARD.md."""
    from cifar_core import plots

    run = store.resolve(run_ref)
    if run.status not in ("completed", "stopped"):
        raise ValueError(f"Run {run.id} is {run.status}; only finished runs can be published.")
    dest = Path(dest or default_model_dir())
    dest.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        if (run.dir / name).is_file():
            shutil.copy2(run.dir / name, dest / name)
    interp = Interpretation.load(run.dir)
    (dest / "confusion_matrix.png").write_bytes(plots.confusion_png(interp.confusion_matrix(), normalized=False))
    (dest / "curves.png").write_bytes(plots.curves_png(store.metrics(run.id, "epoch")))
    atomic_write_text(dest / "MODEL_CARD.md", model_card(run, interp, data_note, machine_note))
    return dest
