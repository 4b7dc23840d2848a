"""Imported datasets: both layouts with and without a wrapping folder, the recorded stratified split, names,
replacing, nothing half-written, --data-dir NAME everywhere, the health report and its blocking problems,
and training refused on them (the CLI and the form)."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifar_core.cli import main as cli
from cifar_core.cli.train import config_from_args
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.data.images import DataError
from cifar_core.data.loader import data_cache_folder, load_dataset
from cifar_core.data.health import blocking_message, check_dataset, samples
from cifar_core.data.imported import DatasetError, import_dataset, list_datasets
from cifar_core.data.locate import data_dir, datasets_root, resolve_data_dir
from tests.conftest import write_folders


def picture(seed: int, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    """A structured picture (blocks of random levels), different for each seed."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((size[1] // 4, size[0] // 4, 1), np.uint8))


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def class_members(per_class: dict[str, int], prefix: str = "", size: tuple[int, int] = (32, 32)) -> dict[str, bytes]:
    return {f"{prefix}{cls}/img{i}.png": encoded(picture(k * 1000 + i, size))
            for k, (cls, n) in enumerate(per_class.items()) for i in range(n)}


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def make_tar_gz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


# ---------------------------------------------------------------- layouts and the split


@pytest.mark.parametrize("prefix", ["", "my photos/"])
def test_class_folders_get_a_stratified_seeded_split_recorded(tmp_path, isolated_artifacts, prefix):
    source = make_zip(tmp_path / "a.zip", class_members({"cat": 10, "dog": 20, "fox": 5}, prefix, size=(64, 48)))
    report = import_dataset(source, "pets", test_fraction=0.2, seed=3)
    assert report["classes"] == ["cat", "dog", "fox"] and report["layout"] == "classes"
    assert report["wrapper"] == (prefix.rstrip("/") or None)
    assert report["counts"] == {"train": {"cat": 8, "dog": 16, "fox": 4}, "test": {"cat": 2, "dog": 4, "fox": 1}}
    assert report["split"] == {"made": True, "test_fraction": 0.2, "seed": 3}
    folder = Path(report["path"])
    assert folder == datasets_root(isolated_artifacts) / "pets"
    recorded = json.loads((folder / "dataset.json").read_text())
    assert recorded["split"] == report["split"] and recorded["counts"] == report["counts"] and recorded["source"] == "a.zip"
    with Image.open(next((folder / "train" / "cat").iterdir())) as im:
        assert im.size == (32, 32) and im.mode == "RGB"  # resized once, on import
    assert (data_cache_folder(str(folder)) / "meta.json").is_file()  # decoded and cached for the first training
    assert report["problems"] == []

    def test_files(seed):
        import_dataset(source, "again", seed=seed, replace=True)
        return sorted(p.name for p in (datasets_root() / "again" / "test").rglob("*.png"))

    assert test_files(3) == sorted(p.name for p in (folder / "test").rglob("*.png"))  # the same seed, the same split
    assert test_files(4) != test_files(3)


@pytest.mark.parametrize("prefix", ["", "cifar-subset/"])
def test_train_and_test_folders_are_kept_as_they_are(tmp_path, isolated_artifacts, prefix):
    members = {**class_members({"cat": 4, "dog": 3}, prefix + "train/"), **class_members({"cat": 2, "dog": 1}, prefix + "test/")}
    report = import_dataset(make_tar_gz(tmp_path / "a.tar.gz", members), "small")
    assert report["layout"] == "splits" and report["split"]["made"] is False
    assert report["counts"] == {"train": {"cat": 4, "dog": 3}, "test": {"cat": 2, "dog": 1}}
    data = load_dataset("small")
    assert data.class_names == ("cat", "dog") and len(data.x_train) == 7 and len(data.x_test) == 3


@pytest.mark.parametrize("top", ["train", "test"])
def test_a_lone_train_or_test_folder_is_split(tmp_path, isolated_artifacts, top):
    report = import_dataset(make_zip(tmp_path / "a.zip", class_members({"cat": 5, "dog": 5}, f"{top}/")), "d")
    assert report["split"]["made"] and report["counts"]["test"] == {"cat": 1, "dog": 1}
    assert report["wrapper"] == (None if top == "train" else "test")


def test_a_source_without_class_folders_says_what_it_holds(tmp_path, isolated_artifacts):
    source = make_zip(tmp_path / "a.zip", {"a.png": encoded(picture(1)), "notes.txt": b"x"})
    with pytest.raises(DatasetError, match=r"no usable images in class folders \(1 not images; 1 outside class folders\)"):
        import_dataset(source, "d")
    assert list(datasets_root().iterdir()) == []


def test_a_folder_can_be_imported(tmp_path, isolated_artifacts):
    root = write_folders(tmp_path / "cifar", n_train=3, n_test=2)
    report = import_dataset(root, "tiny")
    assert report["counts"]["train"] == {name: 3 for name in report["classes"]} and len(report["classes"]) == 10
    original = load_dataset(str(root), cache_dir=tmp_path / "c")
    imported = load_dataset("tiny")
    np.testing.assert_array_equal(np.sort(original.x_test.reshape(len(original.x_test), -1), axis=0),
                                  np.sort(imported.x_test.reshape(len(imported.x_test), -1), axis=0))  # 32x32 PNGs kept exactly


def test_a_class_too_small_for_the_split_is_a_named_problem(tmp_path, isolated_artifacts):
    report = import_dataset(make_zip(tmp_path / "a.zip", class_members({"cat": 5, "dog": 1})), "d")
    blocking = [p for p in report["problems"] if p["blocking"]]
    assert blocking and all(p["class"] == "dog" for p in blocking)
    assert "test/dog" in blocking[0]["message"]
    assert not data_cache_folder(report["path"]).exists()  # not cached: it cannot be loaded as it is


# ---------------------------------------------------------------- names, replacing, nothing half-written


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "-x", "x" * 65, "dots..", "trailing.", "sp ace"])
def test_unsafe_dataset_names_are_refused_in_words(tmp_path, isolated_artifacts, name):
    source = make_zip(tmp_path / "a.zip", class_members({"cat": 3, "dog": 3}))
    with pytest.raises(DatasetError, match="cannot name a dataset: use 1 to 64 letters"):
        import_dataset(source, name)
    assert not datasets_root().exists() or list(datasets_root().iterdir()) == []


def test_an_existing_name_is_refused_unless_replaced(tmp_path, isolated_artifacts):
    first = make_zip(tmp_path / "a.zip", class_members({"cat": 3, "dog": 3}))
    second = make_zip(tmp_path / "b.zip", class_members({"ant": 3, "bee": 3, "cow": 3}))
    import_dataset(first, "d")
    with pytest.raises(DatasetError, match="exists already"):
        import_dataset(second, "d")
    assert list_datasets()[0]["classes"] == ["cat", "dog"]
    assert import_dataset(second, "d", replace=True)["classes"] == ["ant", "bee", "cow"]
    assert [d["classes"] for d in list_datasets()] == [["ant", "bee", "cow"]]
    assert sorted(p.name for p in datasets_root().iterdir()) == ["d"]  # the old one is gone, no temp folder left


def test_a_failure_half_way_leaves_nothing_behind(tmp_path, isolated_artifacts, monkeypatch):
    from cifar_core.data import imported

    source = make_zip(tmp_path / "a.zip", class_members({"cat": 6, "dog": 6}))
    import_dataset(source, "d")
    before = sorted(p.relative_to(datasets_root()) for p in datasets_root().rglob("*"))
    decode = imported.to_input_image
    calls = []

    def failing(data, size):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("stopped half-way")
        return decode(data, size)

    monkeypatch.setattr(imported, "to_input_image", failing)
    with pytest.raises(KeyboardInterrupt):
        import_dataset(source, "d", replace=True)
    assert sorted(p.relative_to(datasets_root()) for p in datasets_root().rglob("*")) == before  # the old one untouched
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        import_dataset(source, "other")
    assert not (datasets_root() / "other").exists() and sorted(p.name for p in datasets_root().iterdir()) == ["d"]


def test_build_folders_of_an_earlier_version_are_removed_a_day_later(tmp_path, isolated_artifacts):
    # Their names carry no process to check (tests/test_import_races.py: those that do are judged by it).
    import os
    import time

    root = datasets_root()
    old, fresh = root / ".tmp-d-killed", root / ".tmp-d-running"
    for folder in (old, fresh):
        (folder / "train").mkdir(parents=True)
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
    import_dataset(make_zip(tmp_path / "a.zip", class_members({"cat": 3, "dog": 3})), "d")
    assert not old.exists() and fresh.is_dir()
    assert [d["name"] for d in list_datasets()] == ["d"]  # hidden build folders are never listed


def test_class_names_that_cannot_be_labels_are_refused(tmp_path, isolated_artifacts):
    source = make_zip(tmp_path / "a.zip", class_members({"cat": 3, "line\nbreak": 3}))
    with pytest.raises(DatasetError, match="control characters"):
        import_dataset(source, "d")
    assert list(datasets_root().iterdir()) == []


# ---------------------------------------------------------------- a dataset name wherever a data folder goes


def test_a_dataset_name_is_a_data_folder_everywhere(tmp_path, isolated_artifacts, monkeypatch):
    report = import_dataset(make_zip(tmp_path / "a.zip", class_members({"cat": 3, "dog": 3})), "pets")
    assert resolve_data_dir("pets") == report["path"] == data_dir("pets")
    monkeypatch.setenv("CIFAR10_DIR", "pets")
    assert data_dir(None) == report["path"]
    assert resolve_data_dir("unknown") == "unknown" and resolve_data_dir(None) is None
    assert resolve_data_dir(str(tmp_path)) == str(tmp_path)  # a folder stays a folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pets").mkdir()
    assert resolve_data_dir("pets") == "pets"  # a folder of that name here wins: paths are never reinterpreted
    monkeypatch.chdir(isolated_artifacts)
    assert TrainConfig(data_dir="pets").validate().resolved_data_dir() == report["path"]
    with pytest.raises(ConfigError) as info:
        TrainConfig(data_dir="no-such-dataset").validate()
    assert "no imported dataset has that name" in info.value.errors["data_dir"]
    args = cli.build_parser().parse_args(["train", "--data-dir", "pets"])
    assert config_from_args(args).resolved_data_dir() == report["path"]


# ---------------------------------------------------------------- health


def healthy(root: Path, classes: tuple[str, ...] = ("cat", "dog", "frog", "ship")) -> Path:
    """A folders dataset of distinct structured pictures: 3 training and 2 test images per class."""
    for k, cls in enumerate(classes):
        for split, n in (("train", 3), ("test", 2)):
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(picture(k * 100 + i + (50 if split == "test" else 0))).save(root / split / cls / f"{i}.png")
    return root


def test_the_health_report_counts_sizes_modes_unreadable_and_duplicates(tmp_path):
    root = healthy(tmp_path / "d")
    cat = root / "train" / "cat"
    shutil.copy(next(iter(sorted(cat.iterdir()))), root / "test" / "cat" / "leak.png")  # exact, across splits
    shutil.copy(next(iter(sorted(cat.iterdir()))), cat / "copy.png")  # exact, within train
    pixels = picture(7, (64, 64))
    Image.fromarray(pixels).save(root / "train" / "dog" / "big.png")
    Image.fromarray(np.clip(pixels.astype(int) + 3, 0, 255).astype(np.uint8)).save(root / "train" / "dog" / "brighter.png")  # near
    Image.fromarray(pixels[..., 0]).convert("L").save(root / "train" / "frog" / "grey.png")
    (root / "train" / "ship" / "broken.png").write_bytes(b"not an image")
    report = check_dataset(root, cache_dir=tmp_path / "cache")
    assert report["counts"]["train"]["cat"] == 4 and report["counts"]["test"]["cat"] == 3
    assert report["sizes"] == {"32x32": 22, "64x64": 3} and report["modes"] == {"RGB": 24, "L": 1}
    assert report["unreadable"] == ["train/ship/broken.png"]
    # Images with a copy (data/duplicates.py): the cat and its copy in train, the leaked test cat, the two dogs.
    assert report["duplicates"]["exact"] == {"within_train": 2, "within_test": 0, "across": 1}
    assert report["duplicates"]["near"] == {"within_train": 2, "within_test": 0, "across": 0}
    assert report["duplicates"]["leaked_test_images"] == 1
    assert {"kind": "near", "a": "train/dog/big.png", "b": "train/dog/brighter.png"} in report["duplicates"]["examples"]
    assert report["imbalance"] == 5 / 4 and not report["blocking"]  # dog: 3 + 2 training images; the others 3 + 1
    # A tiny dataset: few images per class and a test split too small for its accuracy to mean much, both named.
    assert {p["kind"] for p in report["problems"]} == {"unreadable", "leak", "few_images", "small_test"}
    assert not any(p["blocking"] for p in report["problems"])
    assert json.loads(json.dumps(report)) == report
    (tmp_path / "cache").joinpath("marker").write_text("")  # the deep pass is cached: a second report reads it
    assert check_dataset(root, cache_dir=tmp_path / "cache") == report
    assert len(list((tmp_path / "cache").glob("health2-*.json"))) == 1
    grid = samples(root, per_class=2)
    assert len(grid) == 4 and all(len(files) == 2 and all(Path(f).is_file() for f in files) for files in grid.values())


@pytest.mark.parametrize("damage, kind", [
    ("empty_class", "empty_class"),
    ("missing_test_class", "missing_in_split"),
    ("link_to_parent", "class_link"),
    ("one_train_image", "too_few_train"),
    ("empty_test_class", "empty_class"),
])
def test_blocking_problems_are_named_and_stop_loading_and_training(tmp_path, damage, kind):
    root = healthy(tmp_path / "d")
    if damage == "empty_class":
        (root / "train" / "unicorn").mkdir()
        (root / "test" / "unicorn").mkdir()
    elif damage == "missing_test_class":
        shutil.rmtree(root / "test" / "dog")
    elif damage == "link_to_parent":
        (root / "train" / "loop").symlink_to(root / "train")
    elif damage == "one_train_image":
        for p in sorted((root / "train" / "cat").iterdir())[1:]:
            p.unlink()
    elif damage == "empty_test_class":
        for p in (root / "test" / "cat").iterdir():
            p.unlink()
    report = check_dataset(root, deep=False)
    assert report["blocking"] and kind in {p["kind"] for p in report["problems"] if p["blocking"]}
    message = blocking_message(str(root))
    assert message and ("add" in message or "remove" in message or "Replace" in message)  # says how to fix it
    if damage == "link_to_parent":
        assert "a link to its own parent folder (a loop)" in message
    with pytest.raises(DataError, match="cannot be used yet"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")
    from cifar_core.views.train_form import check_data

    with pytest.raises(ConfigError) as info:
        check_data(TrainConfig(data_dir=str(root)).validate())
    assert info.value.errors["data_dir"] == message


def test_training_from_the_cli_is_refused_before_a_run_is_registered(tmp_path, isolated_artifacts, capsys):
    root = healthy(tmp_path / "d")
    (root / "train" / "unicorn").mkdir()
    assert cli.main(["train", "--data-dir", str(root), "--weights", "none"]) == 2
    err = capsys.readouterr().err
    assert "error: --data-dir: this dataset has problems that block training" in err and "train/unicorn/ holds no images" in err
    from cifar_core.runs.store import RunStore

    assert RunStore(isolated_artifacts).list() == []


def test_data_import_list_and_check_from_the_command_line(tmp_path, isolated_artifacts, capsys):
    source = make_zip(tmp_path / "a.zip", class_members({"cat": 5, "dog": 5}, "wrap/"))
    assert cli.main(["data", "import", str(source), "--name", "pets", "--test-fraction", "0.4", "--seed", "1"]) == 0
    imported = json.loads(capsys.readouterr().out.strip())
    assert imported["counts"]["test"] == {"cat": 2, "dog": 2} and imported["split"]["seed"] == 1
    assert cli.main(["data", "import", str(source), "--name", "pets"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert cli.main(["data", "list"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(d["name"], d["classes"]) for d in listed] == [("pets", ["cat", "dog"])]
    assert cli.main(["data", "check", "pets"]) == 0
    checked = json.loads(capsys.readouterr().out.strip())
    assert checked["path"] == imported["path"] and checked["sizes"] == {"32x32": 10} and not checked["blocking"]
    shutil.rmtree(Path(imported["path"]) / "test" / "dog")
    assert cli.main(["data", "check", "pets", "--structure-only"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out.strip())["blocking"] and "test/ has no folder for: dog" in err
    assert cli.main(["data", "check", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err
