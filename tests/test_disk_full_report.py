"""A disk that fills mid-run is reported as such, naming the run, even when the run index cannot be read then
(SQLite says only "disk I/O error" when a full disk stops its journal)."""

from __future__ import annotations

import json
import shutil
import sqlite3

from cifar_core.cli import main as cli
from cifar_core.training import trainer as train
from cifar_core.base.errors import disk_full
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore


def test_sqlite_io_error_is_a_full_disk_only_when_the_disk_is_nearly_full(tmp_path, monkeypatch):
    err = sqlite3.OperationalError("disk I/O error")
    assert not disk_full(err, tmp_path)  # plenty of space: some other I/O fault, reported as it is
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
    assert disk_full(err, tmp_path)
    assert not disk_full(err)  # without a folder to look at, the vague message is not taken for a full disk


def test_train_json_names_the_run_when_the_disk_fills_and_the_index_fails(tiny_data, isolated_artifacts, monkeypatch, capsys):
    usage = shutil.disk_usage(tiny_data)

    def fill_the_disk(config, store, run, *args):
        monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=1 << 20))
        monkeypatch.setattr(RunStore, "get", lambda self, run_id: (_ for _ in ()).throw(RunError("index unreadable")))
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(train, "_train_logged", fill_the_disk)
    rc = cli.main(["train", "--data-dir", str(tiny_data), "--weights", "none", "--arch", "vgg16_bn", "--epochs-head", "0",
                   "--epochs-finetune", "1", "--limit", "4"])
    out, err = capsys.readouterr()
    assert rc == 1
    result = json.loads(out.strip().splitlines()[-1])
    assert result["run_id"] and result["run_dir"] and result["status"] == "failed"
    assert result["error"].startswith("no space left on device") and f"--resume {result['run_id']}" in result["error"]
    assert "error: no space left on device" in err and "Traceback" not in err
    assert disk_full(sqlite3.OperationalError("disk I/O error"), isolated_artifacts)
