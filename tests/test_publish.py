"""publish: the run is checked before anything is copied, and the shipped folder is replaced whole or not at all."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from cifar_core.cli import main as cli
from cifar_core.ship import publish
from cifar_core.data.images import DataError
from cifar_core.model.vgg import load_model
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.data.identity import read_record
from cifar_core.ship.publish import RUN_FILES, publish_run, swap_in
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tiny_run, tmp_path) -> RunStore:
    """A copy of the tiny completed run's store, free to damage."""
    shutil.copytree(tiny_run[0].root, tmp_path / "store")
    return RunStore(tmp_path / "store")


@pytest.fixture
def run_id(tiny_run) -> str:
    return tiny_run[1]["run_id"]


@pytest.fixture
def shipped(tmp_path) -> Path:
    """A published folder holding an older model: a refused publish must leave it byte for byte."""
    dest = tmp_path / "default"
    dest.mkdir()
    for name in (*RUN_FILES, "MODEL_CARD.md", "curves.png"):
        (dest / name).write_text(f"old {name}")
    return dest


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_publish_replaces_the_folder_whole(store, run_id, shipped):
    assert publish_run(store, run_id, shipped) == shipped
    assert {p.name for p in shipped.iterdir()} == {*RUN_FILES, "classes.json", "calibration.json", "ood.json", "MODEL_CARD.md",
                                                   "confusion_matrix.png", "curves.png", "dataset_record.json"}
    assert read_record(shipped) == read_record(store.get(run_id).dir)  # the dataset it learned travels with it
    assert load_model(shipped / "model.keras").count_params() > 0
    assert f"Run `{run_id}`" in (shipped / "MODEL_CARD.md").read_text()
    # nothing left beside it but the lock file that serialises publishes
    assert [p.name for p in shipped.parent.iterdir() if p.name.startswith(".default")] == [".default.publish.lock"]


def test_publish_carries_the_runs_temperature_or_fits_one_and_the_card_reports_it(store, run_id, tmp_path, monkeypatch):
    from cifar_core.predict import calibration

    run = store.get(run_id)
    stored = calibration.read(run.dir)
    assert stored is not None  # training fitted it on the validation split
    dest = publish_run(store, run_id, tmp_path / "a")
    assert calibration.read(dest) == stored
    card = (dest / "MODEL_CARD.md").read_text()
    assert f"Temperature **{stored.temperature:.4f}**" in card and "expected calibration error" in card
    # Outside the project: from the checkout when inside its parent folder (by whole folder names), else as it is.
    parent = str(PROJECT_ROOT.parent)
    shown = os.path.relpath(dest, PROJECT_ROOT) if os.path.commonpath([str(dest), parent]) == parent else str(dest)
    assert f"`python -m cifar_core calibrate --model {shown}`" in card

    from cifar_core.predict import ood

    original = ood.read(run.dir)
    assert ood.read(dest) == original is not None  # the "none of these" threshold travels with the model too
    (run.dir / calibration.CALIBRATION_FILE).unlink()  # a run trained before runs were calibrated
    (run.dir / ood.OOD_FILE).unlink()  # ... and before "none of these": publish fits it as well
    dest = publish_run(store, run_id, tmp_path / "b")
    refitted = calibration.read(dest)
    assert refitted is not None and refitted.temperature == pytest.approx(stored.temperature, rel=1e-3)
    assert ood.read(dest).threshold == pytest.approx(original.threshold, rel=1e-3)  # the same fit as training's

    (run.dir / calibration.CALIBRATION_FILE).unlink()
    monkeypatch.setattr(calibration, "fit_for_model", lambda *a, **k: (_ for _ in ()).throw(DataError("no data here")))
    dest = publish_run(store, run_id, tmp_path / "c")
    assert not (dest / calibration.CALIBRATION_FILE).exists()
    assert "Not calibrated" in (dest / "MODEL_CARD.md").read_text()


def test_publish_into_a_new_folder(store, run_id, tmp_path):
    dest = tmp_path / "new" / "default"
    publish_run(store, run_id, dest)
    assert load_model(dest / "model.keras").count_params() > 0


def test_the_published_model_predicts_as_the_run_without_its_optimizer_state(store, run_id, tmp_path):
    import io
    import zipfile

    import h5py
    import numpy as np

    dest = publish_run(store, run_id, tmp_path / "default")
    ours, theirs = load_model(dest / "model.keras"), load_model(store.get(run_id).model_path)
    x = np.random.default_rng(0).uniform(-100, 100, (4, *ours.input_shape[1:])).astype("float32")
    np.testing.assert_allclose(ours.predict(x, verbose=0), theirs.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    with zipfile.ZipFile(dest / "model.keras") as z, h5py.File(io.BytesIO(z.read("model.weights.h5"))) as weights:
        assert "layers" in weights and "optimizer" not in weights
    assert (dest / "model.keras").stat().st_size < store.get(run_id).model_path.stat().st_size


def missing_predictions(store, run):
    (run.dir / "test_probs.npz").unlink()


def truncated_predictions(store, run):
    path = run.dir / "test_probs.npz"
    path.write_bytes(path.read_bytes()[:100])


def garbage_model(store, run):
    run.model_path.write_bytes(os.urandom(5000))


def truncated_model(store, run):
    run.model_path.write_bytes(run.model_path.read_bytes()[:50_000])


def failed_run(store, run):
    store.finish(run.id, "failed", error="interrupted")


def deleted_folder(store, run):
    shutil.rmtree(run.dir)


def unreadable_config(store, run):
    (run.dir / "config.json").write_text("{bad")


def mistyped_config(store, run):
    import json

    config = json.loads((run.dir / "config.json").read_text())
    (run.dir / "config.json").write_text(json.dumps({**config, "head_units": 5}))


@pytest.mark.parametrize("damage, reason", [
    (missing_predictions, "test_probs.npz missing"),
    (truncated_predictions, "test predictions cannot be read"),
    (garbage_model, "could not be loaded"),
    (truncated_model, "could not be loaded"),
    (failed_run, "is failed; only completed or stopped runs"),
    (deleted_folder, "run folder is missing"),
    (unreadable_config, "config.json is not a valid training configuration"),
    (mistyped_config, "head_units: must be a list of whole numbers"),
])
def test_a_damaged_or_unfinished_run_is_refused_and_nothing_changes(store, run_id, shipped, damage, reason, capsys):
    damage(store, store.get(run_id))
    before = snapshot(shipped)
    with pytest.raises(RunError, match=reason):
        publish_run(store, run_id, shipped)
    assert cli.main(["publish", "--runs-dir", str(store.root), run_id, "--to", str(shipped)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and reason in err and "Traceback" not in err
    assert snapshot(shipped) == before


def test_a_disk_full_while_copying_leaves_the_old_folder(store, run_id, shipped, monkeypatch):
    copied = []

    def copy_then_fail(src, dst):
        if len(copied) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        copied.append(shutil.copyfile(src, dst))

    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    before = snapshot(shipped)
    with pytest.raises(RunError, match="No space left on device.*is unchanged"):
        publish_run(store, run_id, shipped)
    assert snapshot(shipped) == before
    assert [p.name for p in shipped.parent.iterdir() if p.name.startswith(".default.new-")] == []


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_swap_in_puts_the_new_folder_in_place(tmp_path, monkeypatch, exchange):
    if not exchange:  # a filesystem without atomic exchange
        monkeypatch.setattr(publish, "_exchange", lambda a, b: False)
    new, dest = tmp_path / "new", tmp_path / "dest"
    new.mkdir()
    (new / "f").write_text("new")
    swap_in(new, dest)  # no old folder yet
    assert (dest / "f").read_text() == "new" and not new.exists()
    new.mkdir()
    (new / "f").write_text("newer")
    swap_in(new, dest)
    assert (dest / "f").read_text() == "newer" and (new / "f").read_text() == "new"


def test_a_killed_publishs_staging_folders_are_removed_by_the_next(store, run_id, shipped):
    stale = shipped.with_name(f".{shipped.name}.new-dead0000")
    stale.mkdir()
    (stale / "model.keras").write_bytes(b"half written")
    publish_run(store, run_id, shipped)
    assert not stale.exists()
    assert [p.name for p in shipped.parent.glob(f".{shipped.name}.new-*")] == []
