"""The run store: a SQLite index (`artifacts/runs.db`, WAL mode) plus one folder per run.

A run folder holds config.json, model.keras (best so far), history.csv,
evaluation.json, test_probs.npz and train.log. The database holds each run's
status, config, final metrics and the metrics streamed during training; a reader
(the dashboard) and a writer (the trainer) never block each other for long, and
every file is written atomically (temp file + rename).

Why one module of ~600 lines: it is one class over one SQLite schema, and every
method is a transaction on it (create, claim, requeue, finish, metrics, reads
that reap dead runs, repair); process liveness, atomic writing and error wording
live in liveness.py, atomic_io.py and errors.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.config import TrainConfig, stored_config_problem
from cifar_core.base.errors import StudioError, disk_full
from cifar_core.base.liveness import ALIVE, DEAD, UNKNOWN, liveness, process_start
from cifar_core.base.paths import artifacts_dir

STATUSES = ("queued", "running", "completed", "stopped", "failed")
LIVE = ("queued", "running")
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# Before training starts we insist on this much free space: a VGG16 checkpoint is
# ~60-180 MB and the frozen-feature cache can reach a few hundred MB.
MIN_FREE_BYTES = 1 << 30
# How long a call waits for a lock held by another process before giving up with a
# clear error: short for reads (a dashboard page or `runs` must not hang), long for
# the trainer's writes (a slow reader must not fail a training).
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 30.0
# Settings every stored config has always held; without them a resume or an evaluation
# would silently use defaults (ImageNet weights, Keras' download instead of the run's data).
CORE_SETTINGS = ("arch", "weights", "data_dir")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    pid_start INTEGER,
    host TEXT,
    config TEXT NOT NULL,
    summary TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    stop_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    phase TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    ts REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, kind, step);
"""


RUN_COLUMNS = ("id", "status", "created", "started", "finished", "pid", "pid_start", "host", "config", "summary",
               "error", "stop_requested")


class RunError(StudioError, RuntimeError):
    """A run id is invalid or unknown, or the store cannot be used."""

    exit_code = 2


class RunBusyError(RunError):
    """Another training is already running; only one runs at a time. `run_id` names the live run."""

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id


def _busy(row: sqlite3.Row) -> RunBusyError:
    return RunBusyError(f"Run {row['id']} is already training (pid {row['pid']}); stop it or wait for it to finish.", row["id"])


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
                return "model.keras is missing"
            return keras_file_problem(self.model_path)
        return None


def keras_file_problem(path: Path) -> str | None:
    """None if `path` looks like a complete .keras archive, else why not.

    Reads only the zip directory at the end of the file (cheap enough for every
    listing), which is exactly what a truncated or half-copied file lacks.
    """
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (OSError, zipfile.BadZipFile) as err:
        return f"model.keras is truncated or not a Keras file ({err})"
    if not {"config.json", "model.weights.h5"} <= names:
        return "model.keras is incomplete (no config.json or model.weights.h5 inside)"
    return None


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


class RunStore:
    """Runs under `root` (default `artifacts/`): `root/runs.db` and `root/runs/<id>/`."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else artifacts_dir()
        self.runs_dir = self.root / "runs"
        self.db_path = self.root / "runs.db"
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            if not self.db_path.exists():
                self._create_index()
            empty = self.db_path.stat().st_size == 0
        except OSError as err:
            raise RunError(f"Cannot create the artifacts folder {self.runs_dir} and its run index "
                           f"({err.strerror or err}); point CIFAR_ARTIFACTS or --runs-dir at a writable folder.") from err
        if empty:  # an index is never empty once made (see _create_index): this one was cut short or replaced
            raise RunError(f"The run index {self.db_path} is empty (0 bytes): the list of runs was lost, e.g. to a full disk. "
                           f"Move it aside to start a new index; the run folders in {self.runs_dir} are kept.")
        self._refuse_foreign()
        with self._connect(READ_TIMEOUT_S) as db:
            # Read first: creating tables takes the write lock, which a busy trainer may hold.
            if db.execute("SELECT count(*) FROM sqlite_master WHERE name IN ('runs','metrics','metrics_run')").fetchone()[0] < 3:
                db.executescript(SCHEMA)
            if "pid_start" not in {row["name"] for row in db.execute("PRAGMA table_info(runs)")}:
                self._add_pid_start(db)

    def _refuse_foreign(self) -> None:
        """RunError, touching nothing (read-only, before WAL mode is set), if runs.db is some other SQLite file
        or an index of another schema. An index of this studio has a runs table with RUN_COLUMNS (pid_start is
        added to older ones)."""
        try:
            with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=READ_TIMEOUT_S)) as db:
                tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                run_columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
        except sqlite3.DatabaseError as err:  # not SQLite at all, or locked: _connect says which, in words
            if "not a database" in str(err) or "malformed" in str(err):
                raise RunError(f"The run index {self.db_path} is damaged ({err}); move it aside to start a new one.") from err
            return
        if not tables:
            return  # a new, empty index: its tables are made next
        if "runs" not in tables:
            raise RunError(f"{self.db_path} is an SQLite file but not this studio's run index (it holds the tables "
                           f"{', '.join(sorted(tables))}); move it aside, or point --runs-dir / CIFAR_ARTIFACTS elsewhere.")
        missing = sorted(set(RUN_COLUMNS) - run_columns - {"pid_start"})
        if missing:
            raise RunError(f"{self.db_path} holds a runs table of another schema (no column {', '.join(missing)}); "
                           "move it aside to start a new index. It was not changed.")

    def _create_index(self) -> None:
        """Make runs.db whole or not at all: built under a temp name, then linked into place.

        So no reader ever sees a half-made (0-byte) index, and of two processes
        creating it at once, one wins and the other uses its index.
        """
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".runs.db.", suffix=".tmp")
        os.close(fd)
        try:
            with contextlib.closing(sqlite3.connect(tmp)) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(SCHEMA)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, self.db_path)
        finally:
            os.unlink(tmp)

    @staticmethod
    def _add_pid_start(db: sqlite3.Connection) -> None:
        """Upgrade an index made before process start times were recorded."""
        try:
            db.execute("ALTER TABLE runs ADD COLUMN pid_start INTEGER")
        except sqlite3.OperationalError as err:
            if "duplicate column" not in str(err):  # another process upgraded it just now
                raise

    @contextlib.contextmanager
    def _connect(self, timeout: float = WRITE_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
        """A connection that waits at most `timeout` s for locks; SQLite errors become RunError."""
        try:
            db = sqlite3.connect(self.db_path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as err:
            raise RunError(f"Cannot open the run index {self.db_path} ({err}).") from err
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        except sqlite3.OperationalError as err:
            if disk_full(err):
                raise RunError(f"The run index {self.db_path} cannot be written: no space left on device ({err}); free some space.") from err
            if "locked" in str(err) or "busy" in str(err):
                raise RunError(f"The run index {self.db_path} is locked by another process (waited {timeout:g} s); "
                               "try again, or find the process holding it with `fuser` and end it.") from err
            raise RunError(f"The run index {self.db_path} cannot be used ({err}).") from err
        except sqlite3.DatabaseError as err:
            raise RunError(f"The run index {self.db_path} is damaged ({err}); move it aside to start a new one.") from err
        finally:
            db.close()

    # ------------------------------------------------------------ ids and folders

    def run_dir(self, run_id: str) -> Path:
        """The folder of `run_id`; ids with path separators, '..' or odd characters are refused."""
        if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
            raise RunError(f"Invalid run id {run_id!r}: use letters, digits, '-' and '_' only.")
        return self.runs_dir / run_id

    def check_writable(self) -> None:
        """Raise RunError unless the artifacts folder is writable and has room for a run."""
        try:
            with tempfile.NamedTemporaryFile(dir=self.runs_dir):
                pass
        except OSError as err:
            raise RunError(f"Cannot write to {self.runs_dir} ({err.strerror}); training needs a writable artifacts folder.") from err
        free = shutil.disk_usage(self.runs_dir).free
        if free < MIN_FREE_BYTES:
            raise RunError(f"Only {free / 2**20:.0f} MB free in {self.runs_dir}; training needs at least {MIN_FREE_BYTES / 2**20:.0f} MB.")

    # ------------------------------------------------------------ lifecycle

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
        try:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")  # serialises concurrent starts across processes
                try:
                    if exclusive:
                        _refuse_if_live(db)
                    pid = pid or os.getpid()
                    db.execute(
                        "INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES (?,?,?,?,?,?,?,?)",
                        (run_id, status, now, now if status == "running" else None, pid, process_start(pid), socket.gethostname(), config.to_json()),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
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
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                # The launcher's queued row may still hold the launcher's pid: it is ours to take.
                _refuse_if_live(db, ours=lambda row: row["id"] == run_id and (row["status"] == "queued" or row["pid"] == pid))
                db.execute(
                    "UPDATE runs SET status='running', started=COALESCE(started, ?), finished=NULL, error=NULL, pid=?, pid_start=?, host=? WHERE id=?",
                    (time.time(), pid, process_start(pid), socket.gethostname(), run_id),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def requeue(self, run_id: str) -> Run:
        """Queue a stopped or failed run again, for the launcher to resume; RunBusyError while one is live."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                _refuse_if_live(db)
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
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return self.get(run_id)

    def set_pid(self, run_id: str, pid: int) -> None:
        with self._connect() as db:
            db.execute("UPDATE runs SET pid=?, pid_start=? WHERE id=?", (pid, process_start(pid), run_id))

    def finish(self, run_id: str, status: str, *, summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._connect() as db:
            db.execute(
                "UPDATE runs SET status=?, finished=?, summary=?, error=? WHERE id=?",
                (status, time.time(), json.dumps(summary or {}), error, run_id),
            )

    def update_summary(self, run_id: str, **values: Any) -> None:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # read-modify-write in one transaction
            row = db.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
            try:
                summary = json.loads(row["summary"]) if row else {}
            except (TypeError, json.JSONDecodeError):
                summary = {}
            summary = summary if isinstance(summary, dict) else {}
            db.execute("UPDATE runs SET summary=? WHERE id=?", (json.dumps({**summary, **values}), run_id))
            db.execute("COMMIT")

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

    # ------------------------------------------------------------ metrics

    def log_metrics(self, run_id: str, kind: str, phase: str, epoch: int, step: int, values: dict[str, float]) -> None:
        """Append one batch- or epoch-level record (`kind` is 'batch' or 'epoch')."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO metrics (run_id, kind, phase, epoch, step, ts, data) VALUES (?,?,?,?,?,?,?)",
                (run_id, kind, phase, epoch, step, time.time(), json.dumps(values)),
            )

    def metrics(self, run_id: str, kind: str = "epoch", since_step: int = -1) -> pd.DataFrame:
        """Streamed metrics as a DataFrame with columns phase, epoch, step, ts and each metric."""
        with self._connect(READ_TIMEOUT_S) as db:
            rows = db.execute(
                "SELECT phase, epoch, step, ts, data FROM metrics WHERE run_id=? AND kind=? AND step>? ORDER BY step, ts",
                (run_id, kind, since_step),
            ).fetchall()
        records = []
        for r in rows:
            values = _json_dict(r["data"])
            if values is not None:  # a damaged record is left out of the curves, not fatal to them
                records.append({"phase": r["phase"], "epoch": r["epoch"], "step": r["step"], "ts": r["ts"], **values})
        return pd.DataFrame.from_records(records, columns=None if records else ["phase", "epoch", "step", "ts"])

    def truncate_metrics(self, run_id: str, after_epoch: int) -> None:
        """Drop metrics past `after_epoch` (used when resuming from the last completed epoch)."""
        with self._connect() as db:
            db.execute("DELETE FROM metrics WHERE run_id=? AND epoch>?", (run_id, after_epoch))

    # ------------------------------------------------------------ reading

    def _row_to_run(self, row: sqlite3.Row) -> Run:
        """A Run from a row; a damaged row becomes a 'failed' run marked broken, never an exception."""
        run_id = row["id"] if isinstance(row["id"], str) else str(row["id"])
        run_dir = self.runs_dir / run_id if RUN_ID_RE.fullmatch(run_id) else None  # a bad id must not make a path
        config, summary = _json_dict(row["config"]), _json_dict(row["summary"] or "{}")
        config_problem = stored_config_problem(config) if config is not None else None
        problems = [name for name, ok in (
            ("config", config is not None and config_problem is None),
            ("summary", summary is not None),
            ("status", row["status"] in STATUSES),
            ("created", _number(row["created"]) is not None),
            ("id", run_dir is not None),
        ) if not ok]
        return Run(
            id=run_id,
            status=row["status"] if row["status"] in STATUSES else "failed",
            created=_number(row["created"]) or 0.0,
            started=_number(row["started"]),
            finished=_number(row["finished"]),
            pid=row["pid"] if isinstance(row["pid"], int) else None,
            config=config or {},
            summary=summary or {},
            error=row["error"] if isinstance(row["error"], str) else None,
            stop_requested=bool(row["stop_requested"]),
            dir=run_dir,
            broken=(f"corrupted database row (bad {', '.join(problems)})" + (f": {config_problem}" if config_problem else "")
                    if problems else None),
            unknown=_unknown_reason(row) if row["status"] in LIVE and _row_liveness(row) == UNKNOWN else None,
        )

    def _reap(self, rows: list[sqlite3.Row]) -> bool:
        """Mark live runs whose process has died as failed. Returns True if any changed."""
        dead = [r for r in rows if r["status"] in LIVE and _row_liveness(r) == DEAD]
        if dead:
            with self._connect() as db:
                for row in dead:
                    _mark_dead(db, row)
        return bool(dead)

    def get(self, run_id: str) -> Run:
        self.run_dir(run_id)
        with self._connect(READ_TIMEOUT_S) as db:
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                raise RunError(f"No run with id {run_id!r}.")
            if self._reap([row]):
                row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._row_to_run(row)

    def list(self) -> list[Run]:
        """All runs, newest first, with dead 'running' runs marked failed."""
        with self._connect(READ_TIMEOUT_S) as db:
            rows = db.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
            if self._reap(rows):
                rows = db.execute("SELECT * FROM runs ORDER BY created DESC").fetchall()
        return [self._row_to_run(r) for r in rows]

    def active(self) -> Run | None:
        """The run that is training now, if any (a run whose process cannot be checked is not counted)."""
        return next((r for r in self.list() if r.status in LIVE and not r.unknown), None)

    def repair(self, run_ids: list[str] | None = None) -> list[str]:
        """Mark failed the live runs whose process cannot be checked (all of them, or those of `run_ids`);
        returns the ids marked. A run whose process is alive or dead is left to the usual checks."""
        marked = []
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in db.execute("SELECT * FROM runs WHERE status IN ('queued','running')").fetchall():
                    if (run_ids is None or row["id"] in run_ids) and _row_liveness(row) == UNKNOWN:
                        db.execute("UPDATE runs SET status='failed', finished=?, error=? WHERE id=?",
                                   (time.time(), f"marked failed by hand: {_unknown_reason(row)}; "
                                                 f"`python -m cifar_core train --resume {row['id']}` continues it", row["id"]))
                        marked.append(row["id"])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return marked

    def latest_completed(self) -> Run | None:
        return next((r for r in self.list() if r.status == "completed" and r.health() is None), None)

    def resolve(self, ref: str) -> Run:
        """A run from its id or its folder path (which must lie inside this store)."""
        if not isinstance(ref, str):
            raise RunError(f"Invalid run reference {ref!r}.")
        if RUN_ID_RE.fullmatch(ref):
            return self.get(ref)
        try:
            path = Path(ref).resolve()
        except (OSError, ValueError, RuntimeError) as err:  # NUL bytes, symlink loops
            raise RunError(f"{ref!r} is neither a run id nor a run folder under {self.runs_dir}.") from err
        if path.parent != self.runs_dir.resolve():
            raise RunError(f"{ref!r} is neither a run id nor a run folder under {self.runs_dir}.")
        return self.get(path.name)


def _row_liveness(row: sqlite3.Row) -> str:
    """ALIVE, DEAD or UNKNOWN: the process recorded in a live run's row (see cifar_core.base.liveness)."""
    return liveness(row["pid"], row["host"], row["pid_start"])


def _unknown_reason(row: sqlite3.Row) -> str:
    if row["host"] and row["host"] != socket.gethostname():
        return f"its process (pid {row['pid']}) ran on host {row['host']!r}, which this machine cannot check"
    return f"its process (pid {row['pid']}) has no recorded start time, so it cannot be told from another process"


def _refuse_if_live(db: sqlite3.Connection, ours: Callable[[sqlite3.Row], bool] = lambda row: False) -> None:
    """Inside a write transaction: RunBusyError if another live process trains a run; rows whose process
    died are marked failed; rows whose process cannot be checked (UNKNOWN) never block."""
    for row in db.execute("SELECT * FROM runs WHERE status IN ('queued','running')").fetchall():
        if ours(row):
            continue
        state = _row_liveness(row)
        if state == ALIVE:
            raise _busy(row)
        if state == DEAD:
            _mark_dead(db, row)


def _mark_dead(db: sqlite3.Connection, row: sqlite3.Row) -> None:
    db.execute(
        "UPDATE runs SET status='failed', finished=?, error=? WHERE id=? AND status IN ('queued','running')",
        (time.time(), f"interrupted: the training process (pid {row['pid']}) ended without finishing the run; "
                      f"`python -m cifar_core train --resume {row['id']}` continues it from its last completed epoch", row["id"]),
    )


def _json_dict(text: Any) -> dict | None:
    """`text` parsed as a JSON object, or None if it is not one."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    """`value` if it is a real number, else None (a damaged row may hold text there)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
