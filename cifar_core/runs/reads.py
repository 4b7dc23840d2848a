"""Reading runs from the run index, which heals it on the way: a live run whose process has died is marked
failed at the next read, and `repair` marks failed, by hand, the live runs whose process cannot be checked.

A damaged row is read as a 'failed' run marked broken, never as an exception.
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable

from cifar_core.base.liveness import ALIVE, DEAD, UNKNOWN, liveness
from cifar_core.config import stored_config_problem
from cifar_core.runs import ending
from cifar_core.runs.db import RunIndex, json_dict, json_problem
from cifar_core.runs.record import LIVE, RUN_ID_RE, STATUSES, Run, RunBusyError, RunError


class RunReads(RunIndex):
    """Runs as `Run`s: one by id or folder, all of them, the live one, the latest completed one."""

    def run_dir(self, run_id: str) -> Path:
        """The folder of `run_id`; ids with path separators, '..' or odd characters are refused."""
        if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
            raise RunError(f"Invalid run id {run_id!r}: use letters, digits, '-' and '_' only.")
        return self.runs_dir / run_id

    def _row_to_run(self, row: sqlite3.Row) -> Run:
        """A Run from a row; a damaged row becomes a 'failed' run marked broken, never an exception."""
        run_id = row["id"] if isinstance(row["id"], str) else str(row["id"])
        run_dir = self.runs_dir / run_id if RUN_ID_RE.fullmatch(run_id) else None  # a bad id must not make a path
        config, summary = json_dict(row["config"]), json_dict(row["summary"] or "{}")
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
                    + "".join(f"; {why}" for why in (json_problem(row["config"], "its stored config"),
                                                      json_problem(row["summary"] or "{}", "its stored summary")) if why)
                    if problems else None),
            unknown=unknown_reason(row) if row["status"] in LIVE and row_liveness(row) == UNKNOWN else None,
        )

    def _reaped(self, db: sqlite3.Connection, query: str, args: tuple = ()) -> list:
        """The rows of `query`, with live runs whose process has died marked failed: in the index, or where it
        cannot be written now (a read-only folder, a full disk), in the rows returned only."""
        rows = db.execute(query, args).fetchall()
        dead = {r["id"] for r in rows if r["status"] in LIVE and row_liveness(r) == DEAD}
        if not dead:
            return rows
        try:
            with self._connect() as writer:
                for row in rows:
                    if row["id"] in dead:
                        mark_dead(writer, row, self.runs_dir)
        except RunError:
            if not self.cannot_write():
                raise
            return [{**dict(r), **ended(r, self.runs_dir)} if r["id"] in dead else r for r in rows]
        return db.execute(query, args).fetchall()

    def get(self, run_id: str) -> Run:
        self.run_dir(run_id)
        with self._read() as db:
            rows = self._reaped(db, "SELECT * FROM runs WHERE id=?", (run_id,))
        if not rows:
            raise RunError(f"No run with id {run_id!r}.")
        return self._row_to_run(rows[0])

    def list(self) -> list[Run]:
        """All runs, newest first, with dead 'running' runs marked failed."""
        with self._read() as db:
            rows = self._reaped(db, "SELECT * FROM runs ORDER BY created DESC")
        return [self._row_to_run(r) for r in rows]

    def active(self) -> Run | None:
        """The run that is training now, if any (a run whose process cannot be checked is not counted)."""
        return next((r for r in self.list() if r.status in LIVE and not r.unknown), None)

    def repair(self, run_ids: list[str] | None = None) -> list[str]:
        """Mark failed the live runs whose process cannot be checked (all of them, or those of `run_ids`);
        returns the ids marked. A run whose process is alive or dead is left to the usual checks."""
        marked = []
        with self._transaction() as db:
            for row in db.execute("SELECT * FROM runs WHERE status IN ('queued','running')").fetchall():
                if (run_ids is None or row["id"] in run_ids) and row_liveness(row) == UNKNOWN:
                    db.execute("UPDATE runs SET status='failed', finished=?, error=? WHERE id=?",
                               (time.time(), f"marked failed by hand: {unknown_reason(row)}; "
                                             f"`python -m cifar_core train --resume {row['id']}` continues it", row["id"]))
                    marked.append(row["id"])
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


def row_liveness(row: sqlite3.Row) -> str:
    """ALIVE, DEAD or UNKNOWN: the process recorded in a live run's row (see cifar_core.base.liveness)."""
    return liveness(row["pid"], row["host"], row["pid_start"])


def unknown_reason(row: sqlite3.Row) -> str:
    if row["host"] and row["host"] != socket.gethostname():
        return f"its process (pid {row['pid']}) ran on host {row['host']!r}, which this machine cannot check"
    return f"its process (pid {row['pid']}) has no recorded start time, so it cannot be told from another process"


def refuse_if_live(db: sqlite3.Connection, runs_dir: Path, ours: Callable[[sqlite3.Row], bool] = lambda row: False) -> None:
    """Inside a write transaction: RunBusyError if another live process trains a run; rows whose process
    died are marked failed; rows whose process cannot be checked (UNKNOWN) never block."""
    for row in db.execute("SELECT * FROM runs WHERE status IN ('queued','running')").fetchall():
        if ours(row):
            continue
        state = row_liveness(row)
        if state == ALIVE:
            raise RunBusyError(f"Run {row['id']} is already training (pid {row['pid']}); stop it or wait for it to finish.", row["id"])
        if state == DEAD:
            mark_dead(db, row, runs_dir)


def ended(row: sqlite3.Row, runs_dir: Path) -> dict[str, Any]:
    """The status, end time and error of a live run whose process has died: what it left in its folder when the
    index could not take it (a full disk, see ending.py), else "interrupted"."""
    left = ending.read(runs_dir / row["id"]) if isinstance(row["id"], str) and RUN_ID_RE.fullmatch(row["id"]) else None
    if left is not None:
        return {"status": left["status"], "finished": time.time(), "error": left["error"]}
    return {"status": "failed", "finished": time.time(),
            "error": f"interrupted: the training process (pid {row['pid']}) ended without finishing the run; "
                     f"`python -m cifar_core train --resume {row['id']}` continues it from its last completed epoch"}


def mark_dead(db: sqlite3.Connection, row: sqlite3.Row, runs_dir: Path) -> None:
    end = ended(row, runs_dir)
    db.execute("UPDATE runs SET status=?, finished=?, error=? WHERE id=? AND status IN ('queued','running')",
               (end["status"], end["finished"], end["error"], row["id"]))


def _number(value: Any) -> float | None:
    """`value` if it is a real number, else None (a damaged row may hold text there)."""
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
