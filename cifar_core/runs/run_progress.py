"""Where a live training is, for the Train page: its stage, epoch, batch, speed and time left.

The trainer records its stage in the run's summary (`train.StageReporter`) and
streams batch records; this turns both into one line and a progress fraction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from cifar_core.runs.record import Run

# A forward pass costs about a third of a training step (forward + backward).
FORWARD_SPEEDUP = 3.0
# Test-time augmentation predicts 6 views per image (`augment.tta_views`), plus the plain pass reported beside it.
TTA_PASSES = 7
# A speed measured over fewer batches and less time than this is mostly start-up (graph tracing,
# warming caches): right after the first batch the page once read "3 images/s · ETA 6h 13m".
MIN_RATE_BATCHES = 20
MIN_RATE_SECONDS = 10.0


def measured(batches: float | None, seconds: float | None) -> bool:
    """Whether a speed timed over `batches` batches (or items) in `seconds` is worth an ETA."""
    return (batches or 0) >= MIN_RATE_BATCHES or (seconds or 0) >= MIN_RATE_SECONDS


@dataclass(frozen=True)
class LiveProgress:
    """What the live view shows: one line of text and the fraction of the whole run done."""

    text: str
    fraction: float
    eta_s: float


def evaluation_seconds(run: Run, images_per_s: float) -> float:
    """Estimated time of the final test-set evaluation, from the training speed."""
    test_images = int(run.summary.get("test_images") or 10_000)
    passes = TTA_PASSES if run.config.get("tta") else 1
    return test_images * passes / max(images_per_s * FORWARD_SPEEDUP, 1e-9)


def live_progress(run: Run, batches: pd.DataFrame) -> LiveProgress:
    """The stage of `run` and its progress over the whole run (ETA includes the test evaluation).

    The ETA assumes every planned epoch runs; early stopping can only make it shorter.
    """
    stage = run.summary.get("stage") or {}
    name = stage.get("name") or "starting the training process"
    done, total = stage.get("done"), stage.get("total")
    if name.startswith("phase") and not batches.empty and "batch" in batches and "preparing" not in name:
        return _training_progress(run, name, batches.iloc[-1])
    text = name[0].upper() + name[1:]
    fraction = 0.0
    eta = math.nan
    if total:
        text += f": {done:,}/{total:,}"
        since = stage.get("since")
        if since and done and stage.get("ts", 0) > since and measured(None, stage["ts"] - since):
            eta = (total - done) / (done / (stage["ts"] - since))
            text += f" · ETA {duration(eta)}"
        if name.startswith("evaluating"):
            fraction = 0.95 + 0.05 * done / total
    elif name.startswith("saving"):
        fraction = 1.0
    return LiveProgress(text + ("…" if not total else ""), fraction, eta)


def _training_progress(run: Run, stage_name: str, last: pd.Series) -> LiveProgress:
    total = int(run.config.get("epochs_head", 0)) + int(run.config.get("epochs_finetune", 0))
    steps, batch, epoch = int(last["steps"]), int(last["batch"]), int(last["epoch"])
    done = (epoch - 1) * steps + batch
    planned = max(total * steps, 1)
    images_per_s = float(last["images_per_s"])
    rate = images_per_s / max(int(run.config.get("batch_size", 1)), 1)  # batches/s
    eta = math.nan
    speed = f"measuring the speed (ETA after {MIN_RATE_BATCHES} batches or {MIN_RATE_SECONDS:g} s)"
    if measured(_number(last.get("rate_batches")), _number(last.get("rate_seconds"))) and rate > 0:
        eta = (planned - done) / rate + evaluation_seconds(run, images_per_s)
        speed = f"{images_per_s:,.0f} images/s · ETA {duration(eta)} (test evaluation included)"
    text = f"{stage_name[0].upper() + stage_name[1:]} · epoch {epoch}/{total} · batch {batch}/{steps} · {speed}"
    # Training is 95% of the bar; the test evaluation the rest.
    return LiveProgress(text, 0.95 * min(done / planned, 1.0), eta)


def _number(value: object) -> float | None:
    """A record's value, or None where it has none (a column other records filled is NaN here)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def duration(seconds: float) -> str:
    """'1h 02m', '3m 05s' or '12s'."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {s:02d}s" if m else f"{s}s"
