"""Issue 25, breaks 11 and 12 and the leftovers: a name being imported is taken, --replace loses no dataset
under kill -9, and what killed imports and writers leave is removed at the next import or write, judged by
whether their process still runs (never by age)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_archive_import import good_members, make_zip

from cifar_core.base import folder_swap
from cifar_core.base.atomic_io import atomic_write_text
from cifar_core.base.liveness import process_start
from cifar_core.data.imported import DatasetError, import_dataset, list_datasets
from cifar_core.data.locate import datasets_root

ROOT = Path(__file__).resolve().parents[1]


def dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def other_classes() -> dict[str, bytes]:
    return {name.replace("cat/", "ant/").replace("dog/", "bee/"): data for name, data in good_members().items()}


def test_a_name_being_imported_by_a_live_process_is_taken(tmp_path, isolated_artifacts):
    root = datasets_root()
    root.mkdir(parents=True)
    with folder_swap.locked(root):
        folder_swap.new_build(root, "same")  # a live process (this one) is building "same"
    source = make_zip(tmp_path / "a.zip", good_members())
    with pytest.raises(DatasetError, match=r"the name 'same' is taken: another import of it is under way \(process \d+\)"):
        import_dataset(source, "same")
    with pytest.raises(DatasetError, match="is taken"):
        import_dataset(source, "same", replace=True)
    assert import_dataset(source, "other")["name"] == "other"
    assert [d["name"] for d in list_datasets()] == ["other"]


def test_build_folders_of_dead_processes_go_at_the_next_import_those_of_live_ones_stay(tmp_path, isolated_artifacts):
    root = datasets_root()
    dead, me = dead_pid(), os.getpid()
    (root / "y").mkdir(parents=True)  # in place: the old one set aside for it is removed, not put back
    leftovers = {f".tmp-d-{dead}-{12345}-abcd1234": False, f".tmp-x-{me}-{process_start(me)}-abcd1234": True,
                 f".old-y-{dead}-{12345}": False, ".tmp-legacy-abcdefgh": True}
    for name in leftovers:
        (root / name / "train" / "cat").mkdir(parents=True)
        (root / name / "train" / "cat" / "0.png").write_bytes(b"x")
    old_legacy = root / ".tmp-legacy-zzzzzzzz"  # written by an earlier version: no process recorded, so its age
    (old_legacy / "train").mkdir(parents=True)
    os.utime(old_legacy, (time.time() - 2 * 24 * 3600,) * 2)
    import_dataset(make_zip(tmp_path / "a.zip", good_members()), "d")
    kept = {p.name for p in root.iterdir()}
    assert kept == {"d", "y", *(name for name, live in leftovers.items() if live)}, kept


def test_a_dataset_left_aside_by_a_killed_replace_is_put_back(tmp_path, isolated_artifacts):
    import_dataset(make_zip(tmp_path / "a.zip", good_members()), "d")
    root = datasets_root()
    aside = root / f".old-d-{dead_pid()}-12345"
    os.rename(root / "d", aside)  # where a --replace killed between its two renames leaves it
    assert [(d["name"], d["classes"]) for d in list_datasets()] == [("d", ["cat", "dog"])]
    assert sorted(p.name for p in root.iterdir()) == ["d"]
    with pytest.raises(DatasetError, match="exists already"):
        import_dataset(make_zip(tmp_path / "b.zip", other_classes()), "d")


def test_an_old_folder_whose_dataset_is_in_place_is_removed_at_the_next_import(tmp_path, isolated_artifacts):
    import_dataset(make_zip(tmp_path / "a.zip", good_members()), "d")
    root = datasets_root()
    stale = root / f".old-d-{dead_pid()}-12345"
    (stale / "train").mkdir(parents=True)
    assert [d["name"] for d in list_datasets()] == ["d"] and stale.is_dir()  # listing never removes
    import_dataset(make_zip(tmp_path / "b.zip", other_classes()), "e")
    assert sorted(p.name for p in root.iterdir()) == ["d", "e"]


@pytest.mark.parametrize("exchange", [True, False])
def test_replace_swaps_in_one_step_where_it_can_and_leaves_nothing_either_way(tmp_path, isolated_artifacts, monkeypatch, exchange):
    import_dataset(make_zip(tmp_path / "a.zip", good_members()), "d")
    used = []
    real = folder_swap._exchange
    monkeypatch.setattr(folder_swap, "_exchange", lambda a, b: used.append(1) or (real(a, b) if exchange else False))
    assert import_dataset(make_zip(tmp_path / "b.zip", other_classes()), "d", replace=True)["classes"] == ["ant", "bee"]
    assert used and [(d["name"], d["classes"]) for d in list_datasets()] == [("d", ["ant", "bee"])]
    assert sorted(p.name for p in datasets_root().iterdir()) == ["d"]


def test_temp_files_of_killed_writers_go_at_the_next_write(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    dead, me = dead_pid(), os.getpid()
    killed = run / f".calibration.json.{dead}-12345-abcdefgh.tmp"  # what a calibrate killed before its rename leaves
    live = run / f".calibration.json.{me}-{process_start(me)}-abcdefgh.tmp"
    other = run / f".config.json.{dead}-12345-abcdefgh.tmp"
    for path in (killed, live, other):
        path.write_text("{")
    atomic_write_text(run / "calibration.json", "{}")
    assert sorted(p.name for p in run.iterdir()) == sorted([live.name, other.name, "calibration.json"])


# ---------------------------------------------------------------- real processes, killed


def cli(*args: str, env: dict, wait: bool = True):
    command = [sys.executable, "-m", "cifar_core", "data", *args]
    if not wait:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def parked(process: subprocess.Popen, flag: Path) -> None:
    deadline = time.time() + 240
    while not flag.exists():
        assert process.poll() is None and time.time() < deadline, process.communicate()[1][-2000:]
        time.sleep(0.1)


@pytest.mark.slow
def test_of_two_concurrent_imports_of_one_name_the_second_is_refused(tmp_path, isolated_artifacts):
    source = make_zip(tmp_path / "a.zip", good_members())
    flag = tmp_path / "parked"
    env = {**os.environ, "CIFAR_ARTIFACTS": str(isolated_artifacts), "CIFAR_FAULT": "import_built:park",
           "CIFAR_FAULT_PARKED": str(flag)}
    first = cli("import", str(source), "--name", "same", env=env, wait=False)
    try:
        parked(first, flag)  # its dataset is built, not yet in place
        env.pop("CIFAR_FAULT")
        second = cli("import", str(make_zip(tmp_path / "b.zip", other_classes())), "--name", "same", env=env)
        assert second.returncode == 2 and "the name 'same' is taken" in second.stderr, second.stderr[-2000:]
    finally:
        first.kill()  # SIGKILL: no cleanup runs
        first.wait()
    assert any(p.name.startswith(".tmp-same-") for p in datasets_root().iterdir())
    third = cli("import", str(source), "--name", "same", env=env)
    assert third.returncode == 0, third.stderr[-2000:]
    assert sorted(p.name for p in datasets_root().iterdir()) == ["same"]


@pytest.mark.slow
def test_replace_killed_between_its_two_renames_loses_no_dataset(tmp_path, isolated_artifacts):
    import_dataset(make_zip(tmp_path / "a.zip", good_members()), "d")
    flag = tmp_path / "parked"
    env = {**os.environ, "CIFAR_ARTIFACTS": str(isolated_artifacts), "CIFAR_FAULT": "swap_between_renames:park",
           "CIFAR_FAULT_PARKED": str(flag), "PYTHONPATH": str(ROOT)}
    # The two-rename way, as on a file system without renameat2's exchange.
    script = ("import sys; from cifar_core.base import folder_swap; folder_swap._exchange = lambda a, b: False; "
              "from cifar_core.data.imported import import_dataset; import_dataset(sys.argv[1], 'd', replace=True)")
    replacing = subprocess.Popen([sys.executable, "-c", script, str(make_zip(tmp_path / "b.zip", other_classes()))],
                                 env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        parked(replacing, flag)
        assert not (datasets_root() / "d").exists()  # the moment issue 25 found: the old one aside, the new one not in
    finally:
        os.kill(replacing.pid, signal.SIGKILL)
        replacing.wait()
    env.pop("CIFAR_FAULT")
    listed = cli("list", env=env)
    assert [json.loads(line)["classes"] for line in listed.stdout.splitlines()] == [["cat", "dog"]], listed.stderr[-2000:]
    again = cli("import", str(make_zip(tmp_path / "c.zip", other_classes())), "--name", "d", env=env)
    assert again.returncode == 2 and "exists already" in again.stderr
