"""A read-only artifacts folder and a full disk, named as such (issue 25, "Weaknesses"): runs are still listed,
a write says which of the two stops it, and a run that hit a full disk is later listed as failed with "no space
left on device", not as "interrupted".

The real states come from a small tmpfs mounted in a user namespace (`unshare -rm`): a root user ignores a
folder's permission bits, and only a real full disk makes SQLite fail as it does. Where user namespaces are not
allowed these are skipped; the ending kept for a full disk is also checked without one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from cifar_core.runs import ending
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
UNSHARE = shutil.which("unshare")
# Each namespace test starts a Python that imports TensorFlow (the CLI): half a minute on a shared machine.
namespaced = pytest.mark.slow


def in_namespace(tmp_path: Path, script: str, prelude: str = "") -> dict:
    """Run `prelude` then `script` (Python; they find the tmpfs at MOUNT, and the script prints one JSON line) as
    root of a user namespace with a 4 MB tmpfs at tmp_path/mnt; skip where that is not allowed."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    code = f"MOUNT = {str(mount)!r}\n" + textwrap.dedent(prelude) + textwrap.dedent(script)
    shell = f"mount -t tmpfs -o size=4m tmpfs {mount} && exec {sys.executable} -c \"$0\""
    if not UNSHARE or subprocess.run([UNSHARE, "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("user namespaces (unshare -rm) are not allowed here")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([UNSHARE, "-rm", "sh", "-c", shell, code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


PRELUDE = """
import contextlib, io, json, os, sqlite3, subprocess, time
from cifar_core.cli import main as cli
from cifar_core.runs import ending
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

art = os.path.join(MOUNT, "art")
os.environ["CIFAR_ARTIFACTS"] = art
os.environ["CIFAR_DEFAULT_MODEL_DIR"] = os.path.join(MOUNT, "none")
store = RunStore()
dead = subprocess.Popen(["true"]); dead.wait()  # a pid whose process has ended
with contextlib.closing(sqlite3.connect(store.db_path)) as db, db:  # closed: a file left open keeps a remount busy
    db.execute("INSERT INTO runs (id, status, created, config) VALUES ('20300101-000000-done', 'completed', 1.0, '{}')")
    db.execute("INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES "
               "('20300101-000001-full', 'running', 2.0, 2.0, ?, 1, ?, '{}')", (dead.pid, os.uname().nodename))
os.makedirs(store.run_dir('20300101-000001-full'))
ending.reserve(store.run_dir('20300101-000001-full'))

def cli_run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(list(argv))
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

def fill():
    fd = os.open(os.path.join(MOUNT, "fill"), os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fd, b"x" * 4096)
    os.close(fd)
"""


@namespaced
def test_a_full_disk_lists_runs_refuses_writes_and_keeps_the_failure(tmp_path):
    result = in_namespace(tmp_path, prelude=PRELUDE, script="""
    fill()
    r = {}
    try:  # the trainer's last write, on a full disk
        RunStore().finish("20300101-000001-full", "failed", error="no space left on device writing model.keras: free some space")
    except RunError as err:
        r["finish"] = str(err)
    r["runs_full"] = cli_run("runs")
    r["train_full"] = cli_run("train", "--data-dir", MOUNT, "--epochs-head", "0", "--epochs-finetune", "1")
    os.remove(os.path.join(MOUNT, "fill"))
    r["runs_after"] = cli_run("runs", "--json")
    print(json.dumps(r))
    """)
    assert "no space left on device" in result["finish"]
    full = result["runs_full"]
    assert full["code"] == 0 and "20300101-000000-done" in full["out"] and "20300101-000001-full" in full["out"]
    assert "disk I/O error" not in full["out"] + full["err"]
    train = result["train_full"]
    assert train["code"] != 0 and "Traceback" not in train["err"]
    assert "is full" in train["err"] or "MB free" in train["err"], train["err"]
    after = {r["run_id"]: r for r in map(json.loads, result["runs_after"]["out"].splitlines())}
    failed = after["20300101-000001-full"]
    assert failed["status"] == "failed" and failed["error"].startswith("no space left on device"), failed
    assert "interrupted" not in failed["error"]


@namespaced
def test_a_read_only_folder_lists_runs_and_says_it_is_read_only(tmp_path):
    result = in_namespace(tmp_path, prelude=PRELUDE, script="""
    subprocess.run(["mount", "-o", "remount,ro", MOUNT], check=True)
    r = {"runs": cli_run("runs", "--json"), "train": cli_run("train", "--data-dir", MOUNT, "--epochs-head", "0"),
         "repair": cli_run("runs", "--repair")}
    try:
        RunStore().delete("20300101-000000-done")
    except RunError as err:
        r["delete"] = str(err)
    print(json.dumps(r))
    """)
    runs = {r["run_id"]: r for r in map(json.loads, result["runs"]["out"].splitlines())}
    assert result["runs"]["code"] == 0 and set(runs) == {"20300101-000000-done", "20300101-000001-full"}
    # Its process has ended: shown as failed, though the index cannot be written.
    assert runs["20300101-000001-full"]["status"] == "failed"
    for name in ("train", "repair"):
        assert result[name]["code"] != 0 and "is read-only" in result[name]["err"], result[name]
        assert "unable to open database file" not in result[name]["err"] and "Traceback" not in result[name]["err"]
    assert "is read-only" in result["delete"]


@namespaced
def test_a_read_only_folder_without_an_index_lists_no_runs(tmp_path):
    result = in_namespace(tmp_path, """
    import contextlib, io, json, os, subprocess
    from cifar_core.cli import main as cli
    os.makedirs(os.path.join(MOUNT, "art"))
    os.environ["CIFAR_ARTIFACTS"] = os.path.join(MOUNT, "art")
    subprocess.run(["mount", "-o", "remount,ro", MOUNT], check=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["runs"])
    print(json.dumps({"code": code, "out": out.getvalue()}))
    """)
    assert result == {"code": 0, "out": "no runs yet\n"}


def test_a_failure_the_index_refuses_is_kept_in_the_run_folder(isolated_artifacts, monkeypatch):
    """Without a namespace: the index refuses the trainer's last write (as a full disk makes it), the run's
    ending is written in place, and the read that finds its process gone lists it failed with that error."""
    store = RunStore()
    run_id = "20300101-000000-full"
    dead = subprocess.Popen(["true"])
    dead.wait()
    import sqlite3

    with sqlite3.connect(store.db_path) as db:
        db.execute("INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES "
                   "(?, 'running', 1.0, 1.0, ?, 1, ?, '{}')", (run_id, dead.pid, os.uname().nodename))
    store.run_dir(run_id).mkdir()
    ending.reserve(store.run_dir(run_id))
    size = (store.run_dir(run_id) / ending.FILE).stat().st_size

    def full(self, timeout=30.0):
        raise RunError("The run index cannot be written: no space left on device; free some space.")

    with monkeypatch.context() as m:
        m.setattr(RunStore, "_connect", full)
        with pytest.raises(RunError):
            store.finish(run_id, "failed", error="no space left on device writing model.keras: free some space")
    assert (store.run_dir(run_id) / ending.FILE).stat().st_size == size  # written over, not grown
    run = store.get(run_id)
    assert run.status == "failed" and run.error == "no space left on device writing model.keras: free some space"
    assert store.get(run_id).error == run.error  # recorded in the index now


def test_a_run_that_left_no_ending_is_still_interrupted(isolated_artifacts):
    store = RunStore()
    dead = subprocess.Popen(["true"])
    dead.wait()
    import sqlite3

    with sqlite3.connect(store.db_path) as db:
        db.execute("INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES "
                   "('20300101-000000-kill', 'running', 1.0, 1.0, ?, 1, ?, '{}')", (dead.pid, os.uname().nodename))
    store.run_dir("20300101-000000-kill").mkdir()
    ending.reserve(store.run_dir("20300101-000000-kill"))  # blank: the process was killed before it could say why
    assert store.get("20300101-000000-kill").error.startswith("interrupted")
