"""Fault injection across processes: kill -9 and resume, stop, simultaneous starts,
broken runs, a locked index, an unwritable or full artifacts folder.

Trainings run as `python -m cifar_core` subprocesses on the test's own artifacts
folder (CIFAR_ARTIFACTS). Only processes started here are ever signalled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import tiny_config

from cifar_core.cli import main as cli
from cifar_core.runs import db as run_db
from cifar_core.config import TrainConfig
from cifar_core.runs.record import RunBusyError, RunError
from cifar_core.runs.store import RunStore

pytestmark = pytest.mark.slow

# Runs the CLI like `python -m cifar_core`, with test hooks: TEST_BATCH_LOG_INTERVAL logs
# every batch (so the store shows exactly how far training got); TEST_HANG_AT_EPOCH parks
# the trainer in the middle of that epoch and touches TEST_HANG_FILE (so a kill lands
# mid-epoch however loaded the machine is); TEST_GO_FILE holds the process, TensorFlow
# already imported, until the test releases all at once; TEST_MIN_FREE_BYTES lowers the free
# space a training insists on (for a deliberately small disk).
DRIVER = """
import os, sys, time
import cifar_core.training.callbacks, cifar_core.runs.store, cifar_core.training.trainer
if "TEST_MIN_FREE_BYTES" in os.environ:
    cifar_core.runs.store.MIN_FREE_BYTES = int(os.environ["TEST_MIN_FREE_BYTES"])
if "TEST_BATCH_LOG_INTERVAL" in os.environ:
    cifar_core.training.callbacks.BATCH_LOG_INTERVAL_S = float(os.environ["TEST_BATCH_LOG_INTERVAL"])
if "TEST_HANG_AT_EPOCH" in os.environ:
    logged = cifar_core.training.callbacks.RunLogger.on_train_batch_end
    def on_train_batch_end(self, batch, logs=None):
        logged(self, batch, logs)
        if self.epoch_offset + self.epoch + 1 == int(os.environ["TEST_HANG_AT_EPOCH"]) and batch >= 1:
            open(os.environ["TEST_HANG_FILE"], "w").close()
            time.sleep(3600)
    cifar_core.training.callbacks.RunLogger.on_train_batch_end = on_train_batch_end
go = os.environ.get("TEST_GO_FILE")
if go:
    open(f"{go}.{os.getpid()}", "w").close()
    while not os.path.exists(go):
        time.sleep(0.005)
from cifar_core.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
WAIT_S = 900  # only a guard against hangs: a loaded machine can take minutes per training


def flags(config: TrainConfig) -> list[str]:
    """CLI flags reproducing `config` (only the fields that differ from the defaults)."""
    out: list[str] = []
    default = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if value == getattr(default, f.name) or value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return out


def env_for(artifacts: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "CIFAR_ARTIFACTS": str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env.pop("CIFAR10_DIR", None)
    return env


def start(args: list[str], artifacts: Path, *, driver: bool = False, **extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-c", DRIVER] if driver else [sys.executable, "-m", "cifar_core"]
    return subprocess.Popen(cmd + args, env=env_for(artifacts, **extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_cli(args: list[str], artifacts: Path, timeout: float = WAIT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_core", *args], env=env_for(artifacts), capture_output=True, text=True, timeout=timeout)


def finish(proc: subprocess.Popen, timeout: float = WAIT_S) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"process {proc.pid} did not finish in {timeout} s; stderr tail:\n{err[-3000:]}")
    return proc.returncode, out, err


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = WAIT_S):
    """Poll `condition()` until it returns something truthy; fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            _, out, err = finish(proc)
            pytest.fail(f"process ended (rc {proc.returncode}) before {what}; stderr tail:\n{err[-3000:]}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"timed out waiting for {what}")


def only_run(store: RunStore):
    found = store.list()
    return found[0] if len(found) == 1 else None


def batches(store: RunStore, run_id: str):
    return store.metrics(run_id, "batch")


def epochs(store: RunStore, run_id: str):
    return store.metrics(run_id, "epoch")


# ---------------------------------------------------------------- kill -9 and resume


def test_kill9_mid_epoch_then_resume_continues_the_curves(tiny_data, isolated_artifacts, tmp_path):
    # augment=True: both phases fit the full model, so a resumed first phase must not
    # make the second one skip epochs (Keras keeps the restored epoch on the model).
    config = tiny_config(tiny_data, epochs_head=3, epochs_finetune=1, batch_size=8, augment=True)
    hang = tmp_path / "in_epoch_3"
    proc = start(["train", *flags(config)], isolated_artifacts, driver=True,
                 TEST_BATCH_LOG_INTERVAL="0", TEST_HANG_AT_EPOCH="3", TEST_HANG_FILE=str(hang))
    wait_for(hang.exists, proc, "the third epoch to start")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    store = RunStore(isolated_artifacts)
    run = only_run(store)
    assert epochs(store, run.id)["epoch"].tolist() == [1, 2]
    assert batches(store, run.id)["epoch"].max() == 3  # killed inside epoch 3

    killed = store.get(run.id)  # the next read notices the dead process
    assert killed.status == "failed"
    assert "interrupted" in killed.error and f"--resume {run.id}" in killed.error
    assert killed.health() is None
    from cifar_core.model.vgg import load_model

    assert load_model(killed.model_path).count_params() > 0  # the best checkpoint so far
    before = epochs(store, run.id).set_index("epoch")["ts"]
    config_json = (killed.dir / "config.json").read_text()

    rc, out, err = finish(start(["train", "--resume", run.id], isolated_artifacts))
    assert rc == 0, err[-3000:]
    summary = last_json(out)
    assert summary["run_id"] == run.id and summary["status"] == "completed"

    resumed = store.get(run.id)
    assert resumed.status == "completed" and resumed.health() is None
    assert resumed.config == killed.config and (resumed.dir / "config.json").read_text() == config_json
    after = epochs(store, run.id)
    # One record per epoch, 1..4, the phases in order: the curves continue, no repeats, no gaps.
    assert after["epoch"].tolist() == [1, 2, 3, 4]
    assert after["phase"].tolist() == ["head"] * 3 + ["finetune"]
    # Epochs 1 and 2 were backed up before the kill, so they were not trained again: their records are the old ones.
    assert after.set_index("epoch")["ts"][[1, 2]].tolist() == before[[1, 2]].tolist()
    steps = batches(store, run.id)["step"]
    assert steps.is_unique
    assert load_model(resumed.model_path).count_params() > 0


# ---------------------------------------------------------------- killed or out of disk at each stage

# Where CIFAR_FAULT (cifar_core/faults.py) parks the trainer before it is killed. With
# `limit=5` and batch 16 an epoch has 3 batches and each phase 2 epochs: batch@5 is
# mid-way through epoch 2; backup_write@1 is the head phase's first backup, @2 a later
# one, @3 the fine-tuning phase's first (after a completed phase).
PARK_AT = ["data_load", "batch@5", "backup_write@1", "backup_write@2", "backup_write@3", "checkpoint_save@1", "evaluate"]


def assert_resumes_to_completed(store: RunStore, run_id: str, artifacts: Path) -> None:
    """`train --resume` finishes the run: completed, every epoch recorded once, a loadable model."""
    from cifar_core.model.vgg import load_model

    rc, out, err = finish(start(["train", "--resume", run_id], artifacts))
    assert rc == 0 and "Traceback" not in err, err[-3000:]
    assert last_json(out)["status"] == "completed"
    resumed = store.get(run_id)
    assert resumed.status == "completed" and resumed.health() is None
    assert epochs(store, run_id)["epoch"].tolist() == [1, 2, 3, 4]
    assert load_model(resumed.model_path).count_params() > 0


@pytest.mark.parametrize("where", PARK_AT)
def test_killed_at_any_stage_the_run_resumes_to_completed(where, tiny_data, isolated_artifacts, tmp_path):
    config = tiny_config(tiny_data, limit=5)
    parked = tmp_path / "parked"
    proc = start(["train", *flags(config)], isolated_artifacts, CIFAR_FAULT=f"{where}:park", CIFAR_FAULT_PARKED=str(parked))
    wait_for(parked.exists, proc, f"the trainer to reach {where}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    store = RunStore(isolated_artifacts)
    run = only_run(store)
    assert store.get(run.id).status == "failed"  # the next read notices the dead process
    assert_resumes_to_completed(store, run.id, isolated_artifacts)


def test_disk_full_at_the_first_backup_fails_cleanly_then_resumes(tiny_data, isolated_artifacts):
    config = tiny_config(tiny_data, limit=5)
    rc, out, err = finish(start(["train", *flags(config)], isolated_artifacts, CIFAR_FAULT="backup_write@1:enospc"))
    assert rc == 1 and "Traceback" not in err, err[-3000:]
    assert "error: no space left on device" in err
    result = last_json(out)
    assert result["status"] == "failed" and "no space left on device" in result["error"]
    store = RunStore(isolated_artifacts)
    run = store.get(result["run_id"])
    assert run.status == "failed" and "no space left on device" in run.error and f"--resume {run.id}" in run.error
    assert "no space left on device" in (run.dir / "train.log").read_text()
    assert_resumes_to_completed(store, run.id, isolated_artifacts)


def test_a_real_full_disk_mid_training_fails_cleanly_then_resumes(tiny_data, tmp_path):
    """The artifacts on a 100 MB tmpfs with 20 MB left: the run fails wherever the disk fills up."""
    disk = tmp_path / "small_disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (it needs root)")
    try:
        subprocess.run(["fallocate", "-l", "80m", str(disk / "balloon")], check=True)
        artifacts = disk / "artifacts"
        config = tiny_config(tiny_data, limit=5)
        proc = start(["train", *flags(config)], artifacts, driver=True, TEST_MIN_FREE_BYTES="0")
        rc, out, err = finish(proc)
        assert rc == 1 and "Traceback" not in err, err[-3000:]  # not a crash (h5py used to segfault here)
        assert "error: no space left on device" in err
        result = last_json(out)
        assert result["status"] == "failed" and result["run_id"]

        subprocess.run(["mount", "-o", "remount,size=2g", str(disk)], check=True)
        (disk / "balloon").unlink()
        assert_resumes_to_completed(RunStore(artifacts), result["run_id"], artifacts)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_sigterm_stops_the_run_and_says_so(tiny_data, isolated_artifacts, tmp_path):
    parked = tmp_path / "parked"
    proc = start(["train", *flags(tiny_config(tiny_data, limit=5))], isolated_artifacts,
                 CIFAR_FAULT="batch@2:park", CIFAR_FAULT_PARKED=str(parked))
    wait_for(parked.exists, proc, "training to start")
    proc.send_signal(signal.SIGTERM)
    rc, out, err = finish(proc)
    assert rc == 1 and "error: stopped by SIGTERM" in err and "Traceback" not in err, err[-3000:]
    result = last_json(out)
    assert result["status"] == "stopped" and result["error"] == "stopped by SIGTERM"
    assert RunStore(isolated_artifacts).get(result["run_id"]).status == "stopped"


# ---------------------------------------------------------------- stop


def test_stop_from_another_process_stops_within_one_batch(tiny_data, isolated_artifacts):
    config = tiny_config(tiny_data, epochs_head=0, epochs_finetune=200, batch_size=4)
    proc = start(["train", *flags(config)], isolated_artifacts, driver=True, TEST_BATCH_LOG_INTERVAL="0")
    store = RunStore(isolated_artifacts)
    run = wait_for(lambda: (r := only_run(store)) and len(batches(store, r.id)) >= 3 and r, proc, "training to start")

    stop = run_cli(["stop", run.id], isolated_artifacts)
    requested = time.time()  # the flag is in the store by now
    assert stop.returncode == 0, stop.stderr

    rc, out, err = finish(proc)
    assert rc == 0, err[-3000:]
    assert last_json(out)["status"] == "stopped"
    stopped = store.get(run.id)
    assert stopped.status == "stopped" and stopped.health() is None
    # Every batch is logged (TEST_BATCH_LOG_INTERVAL=0): at most the batch in flight ran after the request.
    b = batches(store, run.id)
    assert (b["ts"] > requested).sum() <= 1
    assert len(b) < 200 * 24  # far from the planned 200 epochs of 24 batches
    from cifar_core.model.vgg import load_model

    assert load_model(stopped.model_path).count_params() > 0


def test_stopped_run_resumes_from_its_last_completed_epoch(tiny_data, isolated_artifacts, monkeypatch):
    from cifar_core.training import trainer as train

    store = RunStore(isolated_artifacts)
    with monkeypatch.context() as patched:
        stop_during_epoch(2, patched)
        first = train.train(tiny_config(tiny_data, epochs_head=0, epochs_finetune=3), store=store)
    assert first["status"] == "stopped"
    before = epochs(store, first["run_id"])
    assert before["epoch"].tolist() == [1]

    store.clear_stop(first["run_id"])  # as `train --resume` does
    run = store.get(first["run_id"])
    second = train.train(TrainConfig.from_dict(run.config), store=store, run_id=run.id, resume=True)
    assert second["status"] == "completed"
    after = epochs(store, run.id)
    assert after["epoch"].tolist() == [1, 2, 3]
    assert after["ts"].iloc[0] == before["ts"].iloc[0]  # epoch 1 was not trained again
    assert not (run.dir / "backup" / "finetune").exists()  # removed once the phase is complete


def stop_during_epoch(n: int, monkeypatch) -> None:
    """Make the trainer request its own stop during epoch `n` of the run, as its second batch begins:
    StopOnRequest ends fit when that batch ends."""
    from cifar_core.training import callbacks

    def stop(self, batch, logs=None):  # RunLogger is the callback that knows the run's epoch
        if self.epoch_offset + self.epoch + 1 == n and batch >= 1:
            self.store.request_stop(self.run_id)

    monkeypatch.setattr(callbacks.RunLogger, "on_train_batch_begin", stop, raising=False)


@pytest.mark.parametrize("damaged, said", [
    (["epoch-0002"], "resuming from the older backup epoch-0001.weights.h5"),
    (["epoch-0002", "epoch-0001"], "this phase starts again from its first epoch"),
])
def test_a_damaged_backup_falls_back_to_the_one_before_or_restarts_the_phase(damaged, said, tiny_data, isolated_artifacts, monkeypatch, capsys):
    from cifar_core.training import trainer as train

    store = RunStore(isolated_artifacts)
    stop_during_epoch(3, monkeypatch)
    first = train.train(tiny_config(tiny_data, epochs_head=0, epochs_finetune=4), store=store)
    assert first["status"] == "stopped"
    backup = Path(first["run_dir"]) / "backup" / "finetune"
    assert sorted(p.name for p in backup.iterdir()) == ["epoch-0001.weights.h5", "epoch-0002.weights.h5"]
    for name in damaged:  # cut short, as a full disk or a bad copy would leave it
        path = backup / f"{name}.weights.h5"
        path.write_bytes(path.read_bytes()[:3000])

    monkeypatch.undo()
    store.clear_stop(first["run_id"])
    echoed: list[str] = []
    run = store.get(first["run_id"])
    second = train.train(TrainConfig.from_dict(run.config), store=store, run_id=run.id, resume=True, echo=echoed.append)
    assert second["status"] == "completed" and second["epochs_completed"] == 4
    assert epochs(store, run.id)["epoch"].tolist() == [1, 2, 3, 4]
    log = (run.dir / "train.log").read_text()
    assert said in log and any(said in line for line in echoed)  # in train.log and on the terminal
    assert f"backup {backup / 'epoch-0002.weights.h5'} cannot be read" in log


def test_damaged_weights_of_a_completed_phase_run_that_phase_again(tiny_data, isolated_artifacts, monkeypatch):
    from cifar_core.training import trainer as train

    store = RunStore(isolated_artifacts)
    stop_during_epoch(3, monkeypatch)  # in the fine-tuning phase, after the head phase completed
    first = train.train(tiny_config(tiny_data), store=store)
    assert first["status"] == "stopped" and first["phase_epochs"] == {"head": 2}
    saved = Path(first["run_dir"]) / "after_head.weights.h5"
    saved.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)

    monkeypatch.undo()
    store.clear_stop(first["run_id"])
    run = store.get(first["run_id"])
    second = train.train(TrainConfig.from_dict(run.config), store=store, run_id=run.id, resume=True)
    assert second["status"] == "completed" and second["phase_epochs"] == {"head": 2, "finetune": 2}
    assert epochs(store, run.id)["epoch"].tolist() == [1, 2, 3, 4]
    assert "the weights saved after phase head cannot be read" in (run.dir / "train.log").read_text()


# ---------------------------------------------------------------- simultaneous starts


def test_two_simultaneous_starts_exactly_one_trains(tiny_data, isolated_artifacts, tmp_path):
    config = tiny_config(tiny_data, epochs_head=0, epochs_finetune=200, batch_size=4)
    go = tmp_path / "go"
    procs = [start(["train", *flags(config)], isolated_artifacts, driver=True, TEST_GO_FILE=str(go)) for _ in range(2)]
    for p in procs:  # both imported and waiting at the barrier
        wait_for(lambda p=p: Path(f"{go}.{p.pid}").exists(), p, "the start barrier")
    go.touch()

    refused = wait_for(lambda: next((p for p in procs if p.poll() is not None), None), procs[0], "one start to be refused")
    trainer = procs[1] if refused is procs[0] else procs[0]
    rc, out, err = finish(refused)
    assert rc == 2, err[-3000:]
    assert "already training" in err and "Traceback" not in err

    store = RunStore(isolated_artifacts)
    run = wait_for(lambda: only_run(store), trainer, "the winner's run")
    store.request_stop(run.id)
    rc, out, err = finish(trainer)
    assert rc == 0, err[-3000:]
    assert last_json(out)["run_id"] == run.id
    # One row, one folder, both the winner's.
    [row] = store.list()
    assert row.id == run.id and row.pid == trainer.pid and row.status == "stopped"
    assert [p.name for p in store.runs_dir.iterdir()] == [run.id]
    assert json.loads((row.dir / "config.json").read_text()) == config.to_dict()


def test_resume_is_refused_while_another_run_trains(tiny_data, isolated_artifacts):
    store = RunStore(isolated_artifacts)
    live = store.create(tiny_config(tiny_data))  # 'running' under this (live) test process
    other = store.create(tiny_config(tiny_data), exclusive=False)
    store.finish(other.id, "failed", error="interrupted")
    with pytest.raises(RunBusyError, match=live.id):
        store.mark_running(other.id, pid=os.getpid() + 1)
    assert store.get(other.id).status == "failed"


# ---------------------------------------------------------------- broken runs


@pytest.fixture(scope="module")
def tiny_model_file(tmp_path_factory, tiny_data) -> Path:
    """An untrained tiny model saved as .keras (quick to build, loads like a trained one)."""
    from cifar_core.model.vgg import build_model

    path = tmp_path_factory.mktemp("tiny_model") / "model.keras"
    build_model(tiny_config(tiny_data), num_classes=10).save(path)
    return path


def make_run(store: RunStore, config: TrainConfig, model: Path, status: str = "completed"):
    run = store.create(config, exclusive=False)
    shutil.copy(model, run.model_path)
    store.finish(run.id, status, summary={"val_accuracy": 0.5, "test_accuracy": 0.5})
    time.sleep(0.01)  # distinct creation times keep the listing order defined
    return run


def test_broken_runs_are_listed_with_reasons_and_the_rest_still_work(tiny_data, tiny_model_file, isolated_artifacts, tmp_path, capsys, monkeypatch):
    store = RunStore(isolated_artifacts)
    config = tiny_config(tiny_data)
    good = make_run(store, config, tiny_model_file)
    truncated = make_run(store, config, tiny_model_file)
    data = truncated.model_path.read_bytes()
    truncated.model_path.write_bytes(data[: len(data) // 2])
    missing = make_run(store, config, tiny_model_file)
    shutil.rmtree(missing.dir)
    corrupted = make_run(store, config, tiny_model_file)
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE runs SET config='{\"arch\": ', summary='[1,2]', status='???' WHERE id=?", (corrupted.id,))
        db.execute("INSERT INTO metrics VALUES (?, 'epoch', 'head', 1, 1, 0, 'not json')", (good.id,))

    listing = run_cli(["runs", "--json"], isolated_artifacts)
    assert listing.returncode == 0, listing.stderr
    rows = {r["run_id"]: r for r in map(json.loads, listing.stdout.splitlines())}
    assert rows[good.id]["broken"] is None
    assert "truncated" in rows[truncated.id]["broken"]
    assert rows[missing.id]["broken"] == "run folder is missing"
    assert "corrupted database row" in rows[corrupted.id]["broken"]
    assert store.metrics(good.id).empty  # the damaged record is skipped, not fatal

    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 30, 30)).save(image)
    # With no --model, predict takes the default among *usable* models: the good run, not the three newer
    # broken ones (no shipped model here, which could otherwise be the more accurate default).
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_shipped_model"))
    predicted = run_cli(["predict", str(image)], isolated_artifacts)
    assert predicted.returncode == 0, predicted.stderr
    assert str(good.model_path) in json.loads(predicted.stdout)["model"]

    assert cli.main(["runs"]) == 0  # the text listing survives a row with no config
    text = capsys.readouterr().out
    assert f"{corrupted.id}  broken" in text and f"{good.id}  completed" in text
    assert cli.main(["predict", "--model", truncated.id, str(image)]) == 1
    assert "could not be loaded" in capsys.readouterr().err


def test_locked_index_gives_a_clear_error_not_a_hang(tiny_data, isolated_artifacts, monkeypatch):
    store = RunStore(isolated_artifacts)
    store.create(tiny_config(tiny_data), exclusive=False)
    holder = sqlite3.connect(store.db_path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE runs SET error='held'")  # now even readers are shut out
    try:
        listing = run_cli(["runs"], isolated_artifacts, timeout=120)
        assert listing.returncode == 2
        assert "locked by another process" in listing.stderr and "Traceback" not in listing.stderr

        monkeypatch.setattr(run_db, "READ_TIMEOUT_S", 0.1)
        with pytest.raises(RunError, match="locked"):
            store.list()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(store.list()) == 1  # usable again once the lock is gone


# ---------------------------------------------------------------- unwritable or full artifacts


def test_unwritable_artifacts_fail_before_training(tiny_data, tmp_path):
    # Tests run as root, for whom chmod does not block writes; a path under a regular file cannot be written by anyone.
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    artifacts = blocker / "artifacts"
    result = run_cli(["train", *flags(tiny_config(tiny_data))], artifacts)
    assert result.returncode == 2
    assert "Cannot create the artifacts folder" in result.stderr and "Traceback" not in result.stderr
    with pytest.raises(RunError, match="writable"):
        RunStore(artifacts)


def test_full_disk_fails_before_loading_any_data(tiny_data, isolated_artifacts, monkeypatch, capsys):
    from cifar_core.data import loader as data
    from cifar_core.training import trainer as train

    usage = shutil.disk_usage(isolated_artifacts.parent)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=10 * 2**20))
    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded despite a full disk"))

    assert cli.main(["train", *flags(tiny_config(tiny_data))]) == 2
    assert "MB free" in capsys.readouterr().err
    store = RunStore()
    with pytest.raises(RunError, match="MB free"):
        train.train(tiny_config(tiny_data), store=store)
    assert store.list() == [] and list(store.runs_dir.iterdir()) == []


# ---------------------------------------------------------------- a damaged store


def finished_run(store: RunStore, config: TrainConfig, status: str = "failed"):
    run = store.create(config, exclusive=False)
    store.finish(run.id, status, error="interrupted" if status == "failed" else None)
    return run


def test_resume_after_the_run_folder_was_deleted_says_so(tiny_data, isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    run = finished_run(store, tiny_config(tiny_data))
    shutil.rmtree(run.dir)
    assert cli.main(["train", "--resume", run.id]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Run {run.id} has no run folder") and "Traceback" not in err
    assert store.get(run.id).status == "failed"  # not left 'running'


@pytest.mark.parametrize("stored", ['{"arch": ', "[1, 2]", "{}", '{"lr": 0.1}'])
def test_a_run_whose_settings_are_unreadable_is_neither_resumed_nor_evaluated(stored, tiny_data, isolated_artifacts, capsys, monkeypatch):
    from cifar_core.data import loader as data
    from cifar_core.training import trainer as train

    monkeypatch.setattr(data, "load_dataset", lambda *a, **k: pytest.fail("data loaded for a run without its settings"))
    monkeypatch.setattr(train, "train", lambda *a, **k: pytest.fail("trained with default settings"))
    store = RunStore(isolated_artifacts)
    run = finished_run(store, tiny_config(tiny_data))
    with sqlite3.connect(store.db_path) as db:
        db.execute("UPDATE runs SET config=? WHERE id=?", (stored, run.id))
    for argv in (["train", "--resume", run.id], ["train", "--run-id", run.id], ["evaluate", "--run", run.id]):
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert "stored settings are unreadable" in err and "Traceback" not in err, (argv, err)


def test_a_stale_row_whose_pid_now_belongs_to_another_process_blocks_nothing(tiny_data, isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    config = tiny_config(tiny_data)
    stale = store.create(config)  # 'running', recorded with this process's pid and start time
    other = subprocess.Popen(["sleep", "600"])  # an unrelated live process that got the pid
    try:
        with sqlite3.connect(store.db_path) as db:
            db.execute("UPDATE runs SET pid=? WHERE id=?", (other.pid, stale.id))
        assert cli.main(["stop", stale.id]) == 2
        assert "is not running" in capsys.readouterr().err
        assert store.get(stale.id).status == "failed"
        fresh = store.create(config)  # not refused as busy
        assert store.get(fresh.id).status == "running"
        with pytest.raises(RunBusyError):  # while the live one, this process's, still blocks
            store.create(config)
    finally:
        other.kill()
        other.wait()


def test_stop_on_a_finished_run_says_it_is_not_running(tiny_data, isolated_artifacts, capsys):
    store = RunStore(isolated_artifacts)
    for status in ("completed", "stopped", "failed"):
        run = finished_run(store, tiny_config(tiny_data), status)
        assert cli.main(["stop", run.id]) == 2
        assert capsys.readouterr().err == f"error: Run {run.id} is not running (it is {status}): there is nothing to stop.\n"
        assert not store.get(run.id).stop_requested


@pytest.mark.parametrize("content", [b"", b"garbage, not a database" * 100])
def test_an_empty_or_garbage_index_is_reported(content, isolated_artifacts, capsys):
    isolated_artifacts.mkdir(parents=True)
    (isolated_artifacts / "runs.db").write_bytes(content)
    assert cli.main(["runs"]) == 2
    err = capsys.readouterr().err
    assert ("is empty (0 bytes)" if not content else "is damaged") in err and "Traceback" not in err
    assert (isolated_artifacts / "runs.db").read_bytes() == content  # reported, not overwritten


def test_a_new_index_is_never_seen_empty_and_an_old_one_is_upgraded(tiny_data, isolated_artifacts):
    assert RunStore(isolated_artifacts).db_path.stat().st_size > 0
    old = isolated_artifacts.parent / "old"
    old.mkdir()
    with sqlite3.connect(old / "runs.db") as db:  # the schema before process start times were recorded
        db.executescript(run_db.SCHEMA.replace("    pid_start INTEGER,\n", ""))
        db.execute("INSERT INTO runs (id, status, created, pid, host, config) VALUES ('r1', 'running', 0, 1, 'h', ?)",
                   (tiny_config(tiny_data).to_json(),))
    store = RunStore(old)
    assert [r.id for r in store.list()] == ["r1"]
    store.create(tiny_config(tiny_data), exclusive=False)
