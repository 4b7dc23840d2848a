"""Start a training as a background process, one at a time, and stop it.

The dashboard never trains inside its own script run: a page reload, a closed
tab or a second browser tab must neither kill nor duplicate a training. So the
run row is created here ('queued', exclusively) and `python -m cifar_core train
--run-id ID` does the work in its own session, streaming metrics into the store.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from pathlib import Path

from cifar_core.config import TrainConfig
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.runs.record import Run, RunError
from cifar_core.runs.store import RunStore

# The child's stdout/stderr (progress bars, tracebacks); train.log holds the run's own log.
PROCESS_LOG = "process.log"
LOG_TAIL_BYTES = 64 * 1024


def start_training(config: TrainConfig, store: RunStore) -> Run:
    """Register a queued run and start its training process; RunBusyError if one is live."""
    config.validate()
    run = store.create(config, status="queued", exclusive=True)
    return _spawn(run, store, ["--run-id", run.id])


def resume_training(run_id: str, store: RunStore) -> Run:
    """Queue a stopped or failed run again and continue it from its last completed epoch
    (`train --resume`) in a background process; RunBusyError if another run is live."""
    run = store.requeue(run_id)
    return _spawn(run, store, ["--resume", run.id, "--run-id", run.id])


def _spawn(run: Run, store: RunStore, args: list[str]) -> Run:
    """Start `python -m cifar_core train ARGS` for a queued run, its output appended to the run's process log."""
    cmd = [sys.executable, "-m", "cifar_core", "train", *args, "--runs-dir", str(store.root)]
    try:
        with open(run.dir / PROCESS_LOG, "ab") as log:
            # A new session: Ctrl-C or a restart of the dashboard must not reach the training.
            proc = subprocess.Popen(
                cmd, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
    except OSError as err:
        # The row holds this process's pid until set_pid: without this it would look live forever.
        store.finish(run.id, "failed", error=f"could not start the training process: {err}")
        raise
    store.set_pid(run.id, proc.pid)
    # Reap the child when it exits, so a long-lived dashboard collects no zombie processes.
    threading.Thread(target=proc.wait, name=f"reap-{run.id}", daemon=True).start()
    return store.get(run.id)


def stop_training(run_id: str, store: RunStore) -> None:
    """Ask a live run to stop after its current batch; it saves its model and ends 'stopped'.

    A run that ended (or was deleted) since the page showed its Stop button needs
    no stop: the page's next refresh shows how it ended.
    """
    with contextlib.suppress(RunError):
        store.request_stop(run_id)


def process_log(run: Run, lines: int = 40) -> str:
    """The last `lines` lines of a launched run's process output ('' if there is none)."""
    path = Path(run.dir) / PROCESS_LOG if run.dir else None
    if path is None or not path.is_file():
        return ""
    # Only the end: progress bars make this file grow all run long, and the page rereads it every 2 s.
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - LOG_TAIL_BYTES, 0))
        text = f.read().decode(errors="replace")
    return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])
