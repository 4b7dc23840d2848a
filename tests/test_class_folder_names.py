"""Issue 25, break 9 and look-alike names: any class name valid by the README's rule (1-200 characters, no
control or bidirectional controls) is imported, stored under a folder name safe on every system and shown,
loaded and checked under its real name; names that read alike are refused in an import with the pair named,
and still load, with a warning, from an existing model's classes.json."""

from __future__ import annotations

import json
import logging
import os
import unicodedata

import pytest
from test_archive_import import make_tar, make_zip, png

from cifar_core.data.census import folder_census
from cifar_core.data.classes import CLASSES_FILE, model_class_names
from cifar_core.data.health import check_dataset, samples
from cifar_core.data.imported import DatasetError, import_dataset, list_datasets
from cifar_core.data.loader import load_dataset, split_files
from cifar_core.data.locate import datasets_root

EMOJI = "🐈" * 100  # 100 characters, 400 bytes: more than a file name may have
ODD = [EMOJI, "x" * 200, "CON", "what? a:b*c", "trailing. ", " leading space", "café ☕", "Ünïcödé"]


def members(names: list[str], per_class: int = 3) -> dict[str, bytes]:
    return {f"{name}/{i}.png": png(i * 20 + k * 7) for k, name in enumerate(names) for i in range(per_class)}


@pytest.mark.parametrize("name", ODD)
def test_a_valid_class_name_is_imported_stored_safely_and_shown_as_itself(tmp_path, isolated_artifacts, name):
    report = import_dataset(make_tar(tmp_path / "a.tar", members([name, "dog"])), "d")
    assert report["classes"] == sorted([name, "dog"])
    folder = datasets_root() / "d"
    on_disk = {p.name for p in (folder / "train").iterdir()}
    assert all(len(os.fsencode(p)) <= 80 and "/" not in p and not p.startswith((".", " ")) for p in on_disk)
    record = json.loads((folder / "dataset.json").read_text())
    assert sorted(record["class_folders"].values()) == sorted([name, "dog"]) and set(record["class_folders"]) == on_disk
    assert list_datasets()[0]["classes"] == sorted([name, "dog"])
    assert folder_census(folder)["counts"]["train"] == {n: 2 for n in sorted([name, "dog"])}
    data = load_dataset(str(folder))
    assert data.class_names == tuple(sorted([name, "dog"])) and len(data.x_train) == 4
    files = split_files(str(folder), data, "train")
    assert len(files) == 4 and all(os.path.isfile(f) for f in files)
    assert not check_dataset(folder, deep=True)["blocking"]
    assert all(len(files) == 2 for files in samples(folder).values()) and set(samples(folder)) == {name, "dog"}


def test_the_class_order_is_the_one_dataset_json_records(tmp_path, isolated_artifacts):
    import_dataset(make_zip(tmp_path / "a.zip", members(["b" * 150 + "🐈" * 30, "a" * 150 + "🐈" * 30, "cat"])), "d")
    folder = datasets_root() / "d"
    record = json.loads((folder / "dataset.json").read_text())
    assert list(record["class_folders"].values()) == record["classes"] == sorted(record["classes"])
    assert load_dataset(str(folder)).class_names == tuple(record["classes"])


def test_a_damaged_dataset_json_is_a_problem_in_words_not_a_crash(tmp_path, isolated_artifacts):
    import_dataset(make_zip(tmp_path / "a.zip", members(["cat", "dog"])), "d")
    folder = datasets_root() / "d"
    (folder / "dataset.json").write_text("[" * 20000 + "]" * 20000)
    census = folder_census(folder)
    assert census["classes"] == ["cat", "dog"]  # plain names: their folders are their names
    assert any(p["kind"] == "dataset_file" and not p["blocking"] for p in census["problems"])
    (folder / "dataset.json").write_text(json.dumps({"class_folders": {"../x": "cat"}}))
    assert any(p["kind"] == "dataset_file" for p in folder_census(folder)["problems"])


LOOKALIKES = {
    "case": ("Cat", "cat"),
    "Unicode form": (unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")),
    "trailing space": ("cat", "cat "),
    "leading space": ("cat", " cat"),
    "zero-width space inside": ("cat", "ca\u200bt"),
    "zero-width joiner at the end": ("dog", "dog\u200d"),
    "width": ("cat", "ｃａｔ"),
}


@pytest.mark.parametrize("kind", sorted(LOOKALIKES))
def test_look_alike_names_are_refused_in_an_import_with_the_pair_named(tmp_path, isolated_artifacts, kind):
    first, second = LOOKALIKES[kind]
    with pytest.raises(DatasetError, match="look alike") as caught:
        import_dataset(make_zip(tmp_path / "a.zip", members([first, second, "bird"])), "d")
    assert repr(first) in str(caught.value) and repr(second) in str(caught.value)
    assert list(datasets_root().iterdir()) == []


@pytest.mark.parametrize("name", ["\u200b", "\u200b\u200c", "\u2060", "\ufeff", "\u3164"])
def test_a_name_made_only_of_invisible_characters_is_refused(tmp_path, isolated_artifacts, name):
    with pytest.raises(DatasetError, match="made only of invisible characters"):
        import_dataset(make_zip(tmp_path / "a.zip", members([name, "cat", "dog"])), "d")


def test_an_existing_model_with_look_alike_names_still_loads_with_a_warning(tmp_path, caplog):
    (tmp_path / CLASSES_FILE).write_text(json.dumps({"class_names": ["Cat", "cat", "\u200b"]}))
    with caplog.at_level(logging.WARNING, logger="cifar_core.data.classes"):
        assert model_class_names(tmp_path / "model.keras", 3) == ("Cat", "cat", "\u200b")
    assert "'Cat' and 'cat' look alike" in caplog.text and "the model is used as it is" in caplog.text


def test_a_folder_dataset_with_look_alike_class_folders_gets_a_warning_not_a_block(tmp_path):
    for split in ("train", "test"):
        for name in ("Cat", "cat"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(2):
                (tmp_path / split / name / f"{i}.png").write_bytes(png(i))
    census = folder_census(tmp_path)
    lookalike = [p for p in census["problems"] if p["kind"] == "lookalike_names"]
    assert lookalike and not lookalike[0]["blocking"] and "'Cat' and 'cat'" in lookalike[0]["message"]
