"""Scale-out: two CPU workers under MultiWorkerMirroredStrategy, configured by TF_CONFIG."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from test_resilience import env_for, finish, flags, last_json

from cifar_core.training import distribute
from cifar_core.runs.store import RunStore

# `python -m cifar_core` that also saves the final weights of the full model to
# $TEST_WEIGHTS_OUT, so the test can compare what each worker ended with.
DRIVER = """
import os, sys
import keras, numpy as np
from cifar_core.training import callbacks
end = callbacks.BestModelCheckpoint.on_train_end
def on_train_end(self, logs=None):
    end(self, logs)
    np.savez(os.environ["TEST_WEIGHTS_OUT"], *[keras.ops.convert_to_numpy(w) for w in self.full_model.weights])
callbacks.BestModelCheckpoint.on_train_end = on_train_end
from cifar_core.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}})


def run_two_workers(config, artifacts: Path, work: Path) -> list[tuple[int, str, str]]:
    """Start worker 0 (chief) and worker 1 on fresh loopback ports; wait for both."""
    ports = free_ports(2)
    procs = []
    for index in range(2):
        scratch = work / f"tmp{index}"  # the worker's TMPDIR: where a non-chief keeps its throwaway run
        scratch.mkdir(parents=True)
        env = env_for(artifacts, TF_CONFIG=tf_config(ports, index), TEST_WEIGHTS_OUT=str(work / f"w{index}.npz"), TMPDIR=str(scratch))
        cmd = [sys.executable, "-c", DRIVER, "train", *flags(config)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        return [finish(p, timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


@pytest.mark.slow
def test_two_workers_train_in_lockstep_and_only_the_chief_writes_the_run(tiny_data, tmp_path):
    config = tiny_config(tiny_data, strategy="multiworker", epochs_head=1, epochs_finetune=0, batch_size=16)
    # A cluster that never forms (e.g. a "free" port taken by another process between
    # picking it and binding it) hangs both workers: try once more on new ports, in a
    # fresh folder, before failing. A normal run takes about 10 s.
    for attempt in range(2):
        work = tmp_path / f"attempt{attempt}"
        isolated_artifacts = work / "artifacts"
        try:
            results = run_two_workers(config, isolated_artifacts, work)
            break
        except pytest.fail.Exception:
            if attempt == 1:
                raise
    tmp_path = work
    for rc, _, err in results:
        assert rc == 0, err[-3000:]
    chief, worker = (last_json(out) for _, out, _ in results)

    # Same steps on both: the very same weights.
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert len(w0.files) == len(w1.files) > 0
    for key in w0.files:
        np.testing.assert_allclose(w0[key], w1[key], rtol=0, atol=1e-6)

    # Both wrote to the same artifacts folder, yet there is one run: the chief's.
    store = RunStore(isolated_artifacts)
    [run] = store.list()
    assert chief["run_id"] == run.id and chief["status"] == "completed"
    assert worker["run_id"] is None and worker["worker"] == "worker:1"
    assert [p.name for p in store.runs_dir.iterdir()] == [run.id]
    assert run.status == "completed" and run.health() is None
    assert store.metrics(run.id)["epoch"].tolist() == [1]
    assert list((tmp_path / "tmp1").iterdir()) == []  # the worker's throwaway run is gone


def test_chief_is_the_chief_task_else_worker_zero(monkeypatch):
    def role(cluster: dict, kind: str, index: int) -> bool:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}}))
        return distribute.is_chief()

    workers = {"worker": ["a:1", "b:1"]}
    assert role(workers, "worker", 0) and not role(workers, "worker", 1)
    with_chief = {"chief": ["c:1"], **workers}
    assert role(with_chief, "chief", 0) and not role(with_chief, "worker", 0)
    monkeypatch.delenv("TF_CONFIG")
    assert distribute.is_chief()  # a single process owns its run


@pytest.mark.parametrize("raw", ["", "not json", '{"task": {"type": "worker", "index": 0}}', '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}'])
def test_unusable_tf_config_is_a_clear_usage_error(raw, tiny_data, monkeypatch, capsys):
    from cifar_core.cli import main as cli

    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(distribute.DistributeError, match="TF_CONFIG"):
        distribute.worker_task()
    assert cli.main(["train", *flags(tiny_config(tiny_data, strategy="multiworker"))]) == 2
    assert "--strategy" in capsys.readouterr().err and not RunStore().list()
