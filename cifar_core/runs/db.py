"""The run index's database: `runs.db` (SQLite, WAL mode) beside the run folders, its schema, and the
connections and write transactions every part of the run store goes through.

A reader (the dashboard) and a writer (the trainer) never block each other for long: each
connection waits a bounded time for a lock and says so in words when it gives up.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Any, Iterator

from cifar_core.base.errors import disk_full
from cifar_core.base.paths import artifacts_dir
from cifar_core.runs.record import RunError

# How long a call waits for a lock held by another process before giving up with a
# clear error: short for reads (a dashboard page or `runs` must not hang), long for
# the trainer's writes (a slow reader must not fail a training).
READ_TIMEOUT_S = 5.0
WRITE_TIMEOUT_S = 30.0

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


class RunIndex:
    """The run folders' root (default `artifacts/`): `root/runs.db` and `root/runs/`, made on first use."""

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
        with self._read() as db:
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

    def _read(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A connection for reads: it waits READ_TIMEOUT_S at most, so that a page or `runs` never hangs."""
        return self._connect(READ_TIMEOUT_S)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, committed when the block ends and rolled back if it raises.

        BEGIN IMMEDIATE takes the write lock at once, so a check and the write it decides (one live run
        at a time, a read-modify-write of a summary) are one step for every process.
        """
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise


def json_dict(text: Any) -> dict | None:
    """`text` (a stored JSON column) parsed as a JSON object, or None if it is not one."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None
