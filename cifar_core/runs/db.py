"""The run index's database: `runs.db` (SQLite, WAL mode) beside the run folders, its schema, and the
connections and write transactions every part of the run store goes through.

A reader (the dashboard) and a writer (the trainer) never block each other for long: each
connection waits a bounded time for a lock and says so in words when it gives up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any, Iterator

from cifar_core.base import bounded_json
from cifar_core.base.bounded_json import JSONError
from cifar_core.base.errors import NEARLY_FULL_BYTES, disk_full
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
            if not self.db_path.exists() and self.cannot_write():  # a read-only folder without runs: read as empty
                return
            raise RunError(f"Cannot create the artifacts folder {self.runs_dir} and its run index: "
                           f"{self.cannot_write() or f'{err.strerror or err}; point CIFAR_ARTIFACTS or --runs-dir at a writable folder'}.") from err
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

    def cannot_write(self) -> str | None:
        """Why nothing can be written to the artifacts folder now, in words (it is read-only, or its disk is
        full), or None. Reads still work then (see _read)."""
        try:
            fs = os.statvfs(self.root)
        except OSError:
            return None
        if fs.f_flag & os.ST_RDONLY or not os.access(self.root, os.W_OK) or (
                self.db_path.exists() and not os.access(self.db_path, os.W_OK)):
            return f"the artifacts folder {self.root} is read-only (point CIFAR_ARTIFACTS or --runs-dir at a writable folder)"
        if fs.f_bavail * fs.f_frsize < NEARLY_FULL_BYTES:
            return f"the disk holding the artifacts folder {self.root} is full ({fs.f_bavail * fs.f_frsize / 2**20:.1f} MB free: free some space)"
        return None

    def _refuse_foreign(self) -> None:
        """RunError, touching nothing (read-only, before WAL mode is set), if runs.db is some other SQLite file
        or an index of another schema. An index of this studio has a runs table with RUN_COLUMNS (pid_start is
        added to older ones)."""
        tables, run_columns = set(), set()
        # Read-only, before WAL mode is set; "immutable" where the folder or a full disk keeps SQLite from making its
        # shared-memory file, so that the guard runs there too.
        for options in ("mode=ro", "mode=ro&immutable=1"):
            try:
                with contextlib.closing(sqlite3.connect(file_uri(self.db_path, options), uri=True, timeout=READ_TIMEOUT_S)) as db:
                    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
                    run_columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
                break
            except sqlite3.DatabaseError as err:  # not SQLite at all, or locked: _connect says which, in words
                if "not a database" in str(err) or "malformed" in str(err):
                    raise RunError(f"The run index {self.db_path} is damaged ({err}); move it aside to start a new one.") from err
                if options.endswith("immutable=1") or not self.cannot_write():
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

    def _open(self, timeout: float) -> sqlite3.Connection:
        """A connection to runs.db whose first access worked (that is where a read-only folder or a full disk
        fails: SQLite makes its shared-memory file then); RunError in words otherwise."""
        db = None
        try:
            db = sqlite3.connect(self.db_path, timeout=timeout, isolation_level=None)
            _rows_as_text(db)
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.Error as err:
            if db is not None:
                db.close()
            raise self._error(err, timeout) from err

    def _error(self, err: sqlite3.Error, timeout: float) -> RunError:
        """An SQLite error as a RunError that says what happened and what to do."""
        if disk_full(err, self.root):
            return RunError(f"The run index {self.db_path} cannot be written: no space left on device; free some space.")
        if isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError):
            return RunError(f"The run index {self.db_path} is damaged ({err}); move it aside to start a new one.")
        if _locked(err):
            return RunError(f"The run index {self.db_path} is locked by another process (waited {timeout:g} s); "
                            "try again, or find the process holding it with `fuser` and end it.")
        if why := self.cannot_write():
            return RunError(f"The run index {self.db_path} cannot be written: {why}. Runs can be listed, but not started, "
                            "changed or deleted.")
        return RunError(f"The run index {self.db_path} cannot be used ({err}).")

    @contextlib.contextmanager
    def _connect(self, timeout: float = WRITE_TIMEOUT_S) -> Iterator[sqlite3.Connection]:
        """A connection that waits at most `timeout` s for locks; SQLite errors become RunError."""
        db = self._open(timeout)
        try:
            yield db
        except sqlite3.DatabaseError as err:
            raise self._error(err, timeout) from err
        finally:
            db.close()

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads: it waits READ_TIMEOUT_S at most, so that a page or `runs` never hangs. When the
        folder is read-only or its disk full (SQLite cannot make its shared-memory file then), a read-only one."""
        try:
            db = self._open(READ_TIMEOUT_S)
        except RunError as err:
            if _locked(err.__cause__) or not self.cannot_write():
                raise
            db = self._open_read_only()
        try:
            yield db
        except sqlite3.DatabaseError as err:
            raise self._error(err, READ_TIMEOUT_S) from err
        finally:
            db.close()

    def _open_read_only(self) -> sqlite3.Connection:
        """A connection that never writes, for a read-only folder or a full disk: through SQLite's shared memory
        when its file is there, else the database file as it is ("immutable": without the last changes a
        writer has not yet copied into it, which a full disk or a read-only folder keeps from coming).
        Without runs.db, an empty index in memory."""
        if not self.db_path.exists():
            db = sqlite3.connect(":memory:", isolation_level=None)
            db.executescript(SCHEMA)
            _rows_as_text(db)
            return db
        for options in ("mode=ro", "mode=ro&immutable=1"):
            db = sqlite3.connect(file_uri(self.db_path, options), uri=True, timeout=READ_TIMEOUT_S, isolation_level=None)
            _rows_as_text(db)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return db
            except sqlite3.Error as err:
                db.close()
                last = err
        raise self._error(last, READ_TIMEOUT_S) from last

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


def _locked(err: BaseException | None) -> bool:
    """Whether an SQLite error says another connection holds a lock (waiting longer may help; reading around it
    would not be safe)."""
    return "locked" in str(err) or "busy" in str(err)


def _rows_as_text(db: sqlite3.Connection) -> None:
    """Rows by column name, and text that is not UTF-8 (a damaged row) read with U+FFFD for its odd bytes:
    SQLite's default fails the whole query on it, and one damaged row would hide every run."""
    db.row_factory = sqlite3.Row
    db.text_factory = lambda data: data.decode("utf-8", "replace")


def file_uri(path: Path, options: str) -> str:
    """An SQLite URI of `path` with `options` (e.g. "mode=ro"): every character that a URI reads ('#', '?',
    '%', spaces) is percent-escaped, so a folder named "a#b" is opened as itself, never as "a"."""
    return f"file:{urllib.parse.quote(str(Path(path).absolute()))}?{options}"


def json_dict(text: Any) -> dict | None:
    """`text` (a stored JSON column) parsed as a JSON object, or None if it is not one (a damaged row may
    hold a number, a blob, or text nested too deeply to parse: json_problem says which)."""
    return _json_object(text, "it")[0]


def json_problem(text: Any, what: str) -> str | None:
    """Why `text` (a stored JSON column, called `what`) is not a JSON object, in words, or None if it is one."""
    return _json_object(text, what)[1]


def _json_object(text: Any, what: str) -> tuple[dict | None, str | None]:
    if not isinstance(text, str):
        return None, f"{what} holds {type(text).__name__ if text is not None else 'nothing'} instead of JSON text"
    try:
        value = bounded_json.loads(text, what=what)
    except JSONError as err:
        return None, str(err)
    return (value, None) if isinstance(value, dict) else (None, f"{what} is JSON but not an object")
