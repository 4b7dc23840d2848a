"""The run store heals itself: rows whose process cannot be checked never block, damaged rows and configs are
listed as damaged (never a traceback), and foreign SQLite files are refused untouched."""

from __future__ import annotations

import json
import os
import sqlite3
import time

import pytest

from cifar_core.cli import main as cli
from cifar_core.config import TrainConfig
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

CONFIG = TrainConfig(weights="none", arch="vgg16_bn")


def add_row(store: RunStore, run_id: str, *, status="running", pid=None, host=None, pid_start=None, config=None) -> None:
    (store.runs_dir / run_id).mkdir(parents=True)
    with sqlite3.connect(store.db_path) as db:
        db.execute("INSERT INTO runs (id, status, created, started, pid, pid_start, host, config) VALUES (?,?,?,?,?,?,?,?)",
                   (run_id, status, time.time(), time.time(), pid, pid_start, host, json.dumps(config or CONFIG.to_dict())))


@pytest.mark.parametrize("host, pid_start", [("old-hostname", None), (None, None)], ids=["another host", "no start time"])
def test_a_live_row_that_cannot_be_checked_never_blocks_and_can_be_repaired(host, pid_start, isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    add_row(store, "20260101-000000-aaaa", pid=os.getpid(), host=host, pid_start=pid_start)  # a live pid
    run = store.get("20260101-000000-aaaa")
    assert run.status == "running" and "cannot" in run.unknown
    assert store.active() is None
    store.create(CONFIG)  # a new training proceeds

    assert cli.main(["stop", "20260101-000000-aaaa"]) == 1
    assert cli.main(["train", "--resume", "20260101-000000-aaaa"]) == 2
    assert cli.main(["runs"]) == 0
    out, err = capsys.readouterr()
    assert "runs --repair 20260101-000000-aaaa" in err and "Traceback" not in err
    assert "unknown" in out

    assert cli.main(["runs", "--repair"]) == 0
    assert "marked failed: 20260101-000000-aaaa" in capsys.readouterr().out
    repaired = store.get("20260101-000000-aaaa")
    assert repaired.status == "failed" and "marked failed by hand" in repaired.error and repaired.unknown is None


def test_a_checkable_live_process_still_blocks(isolated_artifacts):
    from cifar_core.base.liveness import process_start
    from cifar_core.runs.record import RunBusyError

    store = RunStore(isolated_artifacts)
    import socket

    add_row(store, "20260101-000000-bbbb", pid=os.getpid(), host=socket.gethostname(), pid_start=process_start(os.getpid()))
    assert store.active().id == "20260101-000000-bbbb"
    with pytest.raises(RunBusyError):
        store.create(CONFIG)
    assert store.repair() == []  # only runs that cannot be checked are repaired


def test_an_out_of_range_pid_is_a_dead_run_not_an_overflow(isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    add_row(store, "20260101-000000-cccc", pid=99999999999)
    assert cli.main(["runs"]) == 0
    assert store.get("20260101-000000-cccc").status == "failed"
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("bad", [{"classes": 5}, {"data_dir": 5}, {"head_units": 5}])
def test_a_stored_config_of_wrong_types_makes_that_run_damaged_only(bad, isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    add_row(store, "20260101-000000-dddd", status="completed", config={**CONFIG.to_dict(), **bad})
    add_row(store, "20260101-000000-eeee", status="completed")
    runs = {r.id: r for r in store.list()}
    assert runs["20260101-000000-eeee"].broken is None
    damaged = runs["20260101-000000-dddd"]
    assert damaged.health() and next(iter(bad)) in damaged.health()
    with pytest.raises(RunError, match="stored settings are unreadable"):
        damaged.usable_config()
    assert cli.main(["train", "--resume", "20260101-000000-dddd"]) == 2
    assert cli.main(["evaluate", "--model", "20260101-000000-dddd"]) == 2
    assert "Traceback" not in capsys.readouterr().err
    store.delete("20260101-000000-dddd")
    assert [r.id for r in store.list()] == ["20260101-000000-eeee"]


def _foreign(path, script):
    with sqlite3.connect(path) as db:
        db.executescript(script)
    return path.read_bytes()


@pytest.mark.parametrize("script, reason", [
    ("CREATE TABLE photos (id INTEGER, name TEXT); INSERT INTO photos VALUES (1, 'cat');", "not this studio's run index"),
    ("CREATE TABLE runs (name TEXT, state TEXT);", "another schema"),
], ids=["unrelated", "other schema"])
def test_a_foreign_sqlite_file_is_refused_in_words_and_left_unchanged(script, reason, isolated_artifacts, capsys):
    isolated_artifacts.mkdir(parents=True)
    before = _foreign(isolated_artifacts / "runs.db", script)
    with pytest.raises(RunError, match=reason):
        RunStore(isolated_artifacts)
    assert cli.main(["runs"]) == 2
    assert reason in capsys.readouterr().err
    assert (isolated_artifacts / "runs.db").read_bytes() == before


def test_resume_refuses_setting_flags_instead_of_training_with_unrecorded_ones(isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    add_row(store, "20260101-000000-9999", status="stopped")
    assert cli.main(["train", "--resume", "20260101-000000-9999", "--lr", "0.5", "--epochs-finetune", "3"]) == 2
    err = capsys.readouterr().err
    assert "--lr, --epochs-finetune cannot change them" in err and "Traceback" not in err
    assert store.get("20260101-000000-9999").status == "stopped"
