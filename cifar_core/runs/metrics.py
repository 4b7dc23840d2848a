"""The metrics a training streams into the run index, batch by batch and epoch by epoch, and the curves read back."""

from __future__ import annotations

import json
import time

import pandas as pd

from cifar_core.runs.db import RunIndex, json_dict


class RunMetrics(RunIndex):
    """The `metrics` table of the run index: one JSON record per batch or epoch of a run."""

    def log_metrics(self, run_id: str, kind: str, phase: str, epoch: int, step: int, values: dict[str, float]) -> None:
        """Append one batch- or epoch-level record (`kind` is 'batch' or 'epoch')."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO metrics (run_id, kind, phase, epoch, step, ts, data) VALUES (?,?,?,?,?,?,?)",
                (run_id, kind, phase, epoch, step, time.time(), json.dumps(values)),
            )

    def metrics(self, run_id: str, kind: str = "epoch", since_step: int = -1) -> pd.DataFrame:
        """Streamed metrics as a DataFrame with columns phase, epoch, step, ts and each metric."""
        with self._read() as db:
            rows = db.execute(
                "SELECT phase, epoch, step, ts, data FROM metrics WHERE run_id=? AND kind=? AND step>? ORDER BY step, ts",
                (run_id, kind, since_step),
            ).fetchall()
        records = []
        for r in rows:
            values = json_dict(r["data"])
            if values is not None:  # a damaged record is left out of the curves, not fatal to them
                records.append({"phase": r["phase"], "epoch": r["epoch"], "step": r["step"], "ts": r["ts"], **values})
        return pd.DataFrame.from_records(records, columns=None if records else ["phase", "epoch", "step", "ts"])

    def truncate_metrics(self, run_id: str, after_epoch: int) -> None:
        """Drop metrics past `after_epoch` (used when resuming from the last completed epoch)."""
        with self._connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id=? AND epoch>?", (run_id, after_epoch))
