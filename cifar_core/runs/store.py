"""The run store: the run index (`artifacts/runs.db`, see db.py) plus one folder per run, and a run's lifecycle.

A run folder holds config.json, model.keras (best so far), history.csv,
evaluation.json, test_probs.npz and train.log. The database holds each run's
status, config, final metrics and the metrics streamed during training; every
file is written atomically (temp file + rename).

`RunStore` is the one object callers use. Its jobs live in their own modules: the
schema, connections and transactions (db.py), the streamed metrics (metrics.py),
reads that heal the index and its repair (reads.py); here, a run's lifecycle:
create, claim, requeue, finish, stop, delete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import time
from typing import Any

from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.base.liveness import process_start
from cifar_core.config import TrainConfig
from cifar_core.runs import ending
from cifar_core.runs.db import json_dict
from cifar_core.runs.metrics import RunMetrics
from cifar_core.runs.reads import RunReads, refuse_if_live
from cifar_core.runs.record import LIVE, STATUSES, Run, RunBusyError, RunError, new_run_id

# Before training starts we insist on this much free space: a VGG16 checkpoint is
# ~60-180 MB and the frozen-feature cache can reach a few hundred MB.
MIN_FREE_BYTES = 1 << 30


class RunStore(RunMetrics, RunReads):
    """Runs under `root` (default `artifacts/`): `root/runs.db` and `root/runs/<id>/`."""

    def check_writable(self) -> None:
        """Raise RunError unless the artifacts folder is writable and has room for a run."""
        try:
            with tempfile.NamedTemporaryFile(dir=self.runs_dir):
                pass
        except OSError as err:
            raise RunError(f"Training needs a writable artifacts folder, and {self.cannot_write() or err.strerror}.") from err
        free = shutil.disk_usage(self.runs_dir).free
        if free < MIN_FREE_BYTES:
            raise RunError(f"Only {free / 2**20:.0f} MB free in {self.runs_dir}; training needs at least {MIN_FREE_BYTES / 2**20:.0f} MB.")

    def create(self, config: TrainConfig, *, status: str = "running", pid: int | None = None, exclusive: bool = True) -> Run:
        """Register a new run and make its folder. With `exclusive`, refuse while another is live."""
        self.check_writable()
        run_id = new_run_id()
        now = time.time()
        run_dir = self.run_dir(run_id)
        # The folder before the row: a kill at any moment leaves either no row (and an unused
        # folder) or a row whose folder and config.json exist, so that `--resume` can continue it.
        run_dir.mkdir(parents=True)
        atomic_write_text(run_dir / "config.json", config.to_json())
        ending.reserve(run_dir)
        try:
            with self._transaction() as db:  # serialises concurrent starts across processes
                if exclusive:
                    refuse_if_live(db, self.runs_dir)
                pid = pid or os.getpid()
                db.execute(
                    "INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES (?,?,?,?,?,?,?,?)",
                    (run_id, status, now, now if status == "running" else None, pid, process_start(pid), socket.gethostname(), config.to_json()),
                )
        except BaseException:
            shutil.rmtree(run_dir, ignore_errors=True)
            raise
        return self.get(run_id)

    def mark_running(self, run_id: str, pid: int | None = None) -> None:
        """Claim an existing run (queued by the launcher, or being resumed) for this process.

        Refused with RunBusyError while another live process trains this or any other run,
        so two resumes, or a resume beside a new training, cannot run at once.
        """
        pid = pid or os.getpid()
        with self._transaction() as db:
            # The launcher's queued row may still hold the launcher's pid: it is ours to take.
            refuse_if_live(db, self.runs_dir, ours=lambda row: row["id"] == run_id and (row["status"] == "queued" or row["pid"] == pid))
            db.execute(
                "UPDATE runs SET status='running', started=COALESCE(started, ?), finished=NULL, error=NULL, pid=?, pid_start=?, host=? WHERE id=?",
                (time.time(), pid, process_start(pid), socket.gethostname(), run_id),
            )
        with contextlib.suppress(OSError):  # a run made before endings were kept gets one; a folder gone is reported later
            ending.reserve(self.run_dir(run_id))

    def requeue(self, run_id: str) -> Run:
        """Queue a stopped or failed run again, for the launcher to resume; RunBusyError while one is live."""
        with self._transaction() as db:
            refuse_if_live(db, self.runs_dir)
            row = db.execute("SELECT status FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None or row["status"] not in ("stopped", "failed"):
                raise RunError(f"Run {run_id} is {row['status'] if row else 'unknown'}; only a stopped or failed run can be resumed.")
            # This process holds the queued row until the launcher hands it to the training's pid
            # (set_pid); its start time too, or the row would pass for dead (the last process's
            # start time beside this pid) and be marked failed at the next read.
            db.execute(
                "UPDATE runs SET status='queued', finished=NULL, error=NULL, pid=?, pid_start=?, host=?, stop_requested=0 WHERE id=?",
                (os.getpid(), process_start(os.getpid()), socket.gethostname(), run_id),
            )
        return self.get(run_id)

    def set_pid(self, run_id: str, pid: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET pid=?, pid_start=? WHERE id=?", (pid, process_start(pid), run_id))

    def finish(self, run_id: str, status: str, *, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        try:
            with self._connect() as db:
                db.execute(
                    "UPDATE runs SET status=?, finished=?, summary=?, error=? WHERE id=?",
                    (status, time.time(), json.dumps(summary or {}), error, run_id),
                )
        except RunError:  # e.g. a full disk: the run's folder keeps its ending, for the next read to find
            ending.leave(self.run_dir(run_id), status, error)
            raise

    def update_summary(self, run_id: str, **values: Any) -> None:
        with self._transaction() as db:  # read-modify-write in one transaction
            row = db.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
            summary = (json_dict(row["summary"]) if row else None) or {}
            db.execute("UPDATE runs SET summary=? WHERE id=?", (json.dumps({**summary, **values}), run_id))

    def request_stop(self, run_id: str) -> None:
        """Ask a live run to stop after its current batch; RunError if it is not training."""
        run = self.get(run_id)  # a run whose process died is marked failed here
        if run.status not in LIVE:
            raise RunError(f"Run {run_id} is not running (it is {run.status}): there is nothing to stop.")
        with self._connect() as db:
            db.execute("UPDATE runs SET stop_requested=1 WHERE id=?", (run_id,))

    def clear_stop(self, run_id: str) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET stop_requested=0 WHERE id=?", (run_id,))

    def stop_requested(self, run_id: str) -> bool:
        """Asked once per batch by the trainer (so it uses the long, writer-side timeout)."""
        with self._connect() as db:
            row = db.execute("SELECT stop_requested FROM runs WHERE id=?", (run_id,)).fetchone()
        return bool(row and row[0])

    def delete(self, run_id: str) -> None:
        """Remove a finished run's row, metrics and folder. A live run must be stopped first."""
        run = self.get(run_id)
        if run.status in LIVE:
            raise RunBusyError(f"Run {run_id} is {run.status}; stop it before deleting it.", run_id)
        with self._connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
