"""What a run is: its row of the run index as a `Run`, its statuses and ids, and the errors of the run store.

The run store (store.py) reads and writes these; the pages, the CLI and the trainer pass them around.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_core.base.bounded_io import UnpackError
from cifar_core.base.bounded_zip import open_zip
from cifar_core.base.errors import StudioError

STATUSES = ("queued", "running", "completed", "stopped", "failed")
LIVE = ("queued", "running")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Settings every stored config has always held; without them a resume or an evaluation
# would silently use defaults (ImageNet weights, Keras' download instead of the run's data).
CORE_SETTINGS = ("arch", "weights", "data_dir")


class RunError(StudioError, RuntimeError):
    """A run id is invalid or unknown, or the store cannot be used."""

    exit_code = 2


class RunBusyError(RunError):
    """Another training is already running; only one runs at a time. `run_id` names the live run."""

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id


@dataclass
class Run:
    """One row of the run index."""

    id: str
    status: str
    created: float
    started: float | None
    finished: float | None
    pid: int | None
    config: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    stop_requested: bool = False
    dir: Path | None = None
    broken: str | None = None  # set when the database row itself is unreadable
    unknown: str | None = None  # set when a live run's process cannot be checked (see cifar_core.base.liveness)

    @property
    def model_path(self) -> Path:
        return self.dir / "model.keras"

    def usable_config(self) -> dict[str, Any]:
        """The run's own settings, to resume or evaluate it; RunError if its folder or settings are gone.

        Never falls back to defaults: they would train or evaluate another model on other data.
        """
        if self.dir is None or not self.dir.is_dir():
            raise RunError(f"Run {self.id} has no run folder any more ({self.dir}); it cannot be resumed or evaluated.")
        if self.broken:
            raise RunError(f"Run {self.id}'s stored settings are unreadable or its row is damaged ({self.broken}); "
                           "it cannot be resumed or evaluated. Delete it or start a new run.")
        if not set(CORE_SETTINGS) <= set(self.config):
            raise RunError(f"Run {self.id}'s stored settings are unreadable or incomplete in the run index; "
                           "it cannot be resumed or evaluated. Start a new run.")
        return self.config

    def health(self) -> str | None:
        """None if the run's files look usable, else why not (shown as 'broken')."""
        if self.broken:
            return self.broken
        if self.dir is None or not self.dir.is_dir():
            return "run folder is missing"
        if self.status in ("completed", "stopped"):
            if not self.model_path.is_file():
                # Stopped before its first epoch ended (e.g. during the "Your images" trials): no model was saved
                # yet, which is what such a run is ("not usable", resumable), not damage.
                if self.status == "stopped" and not finished_an_epoch(self.summary):
                    return None
                return "model.keras is missing"
            return keras_file_problem(self.model_path)
        return None


def finished_an_epoch(summary: dict[str, Any]) -> bool:
    """Whether a run completed at least one epoch, i.e. its model holds trained weights.

    A run that failed mid-training has no `epochs_completed` yet; its best epoch, recorded
    as each epoch ends, says whether one did.
    """
    if "epochs_completed" in summary:
        return (summary["epochs_completed"] or 0) > 0
    return summary.get("best_epoch") is not None or summary.get("best_val_accuracy") is not None


def keras_file_problem(path: Path) -> str | None:
    """None if `path` looks like a complete .keras archive, else why not.

    Reads only the zip directory at the end of the file (cheap enough for every
    listing), which is exactly what a truncated or half-copied file lacks.
    """
    try:
        # Its directory counted first: a hostile one of millions of entries would cost every listing gigabytes.
        with open_zip(path, max_members=64) as z:  # a Keras archive holds a few files (safe_h5.MAX_MEMBERS)
            names = set(z.namelist())
    except UnpackError as err:
        return f"model.keras is truncated or not a Keras file (it {err})"
    except OSError as err:
        return f"model.keras cannot be read ({err.strerror or err})"
    if not {"config.json", "model.weights.h5"} <= names:
        return "model.keras is incomplete (no config.json or model.weights.h5 inside)"
    return None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)
