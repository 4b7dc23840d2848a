"""One JSON reader with a depth and a size limit (issue 25, point 7 and "What to build" 2): every JSON the studio
reads goes through cifar_core/base/bounded_json, so a run row or a file of 100,000 nested brackets is a message
naming it, never a RecursionError that takes `runs` and every page down."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest

from cifar_core.base import bounded_json
from cifar_core.base.bounded_json import JSONError
from cifar_core.cli import main as cli
from cifar_core.data.classes import ClassesError, model_class_names
from cifar_core.predict import calibration
from cifar_core.predict.calibration import CalibrationError
from cifar_core.runs.model_choice import model_choices
from cifar_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
DEEP = 20_000


def deep(n: int = DEEP) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("text, depth", [
    ("1", 0), ("[]", 1), ('{"a": [1, {"b": []}]}', 4), ('["[[[[", "\\"[[[["]', 1), ('"]]]]"', 0), (deep(5), 5),
])
def test_nesting_depth_counts_brackets_outside_strings(text, depth):
    assert bounded_json.nesting_depth(text.encode()) == depth


@pytest.mark.parametrize("text, message", [
    (deep(), "nests more than 64 levels deep"),
    ('{"a":' * 100_000, "nests more than 64 levels deep"),
    ("{ damaged", "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid JSON"),
    ("1" * 5000, "is not valid JSON"),  # more digits than Python converts
])
def test_hostile_text_is_a_message_naming_it(text, message):
    with pytest.raises(JSONError, match=f"^the thing {message}"):
        bounded_json.loads(text, what="the thing")


def test_size_is_bounded_before_parsing(tmp_path):
    path = tmp_path / "big.json"
    path.write_text("[" + "1," * 1000 + "1]")
    with pytest.raises(JSONError, match=re.escape(f"{path} is 1,001 bytes, more than the 1,000")):
        bounded_json.read(path, max_bytes=1000)
    assert bounded_json.read(path, max_bytes=5000) == [1] * 1001
    assert bounded_json.loads('{"a": ["[", {"b": 1}]}') == {"a": ["[", {"b": 1}]}  # depth 3, brackets in a string


def test_no_json_is_read_past_the_bounded_reader():
    """The family: every JSON read in the engine and the dashboard goes through bounded_json. Only the
    model-file check reads a .keras archive's config.json itself (through the archive reader that bounds
    its size, issue 25 point 2)."""
    allowed = {"cifar_core/base/bounded_json.py", "cifar_core/model/safe_h5.py"}
    found = []
    for folder in ("cifar_core", "studio", "app_pages"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if re.search(r"\bjson\.loads?\(|\bread_json\(", line) and rel not in allowed:
                    found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "JSON read without bounded_json:\n" + "\n".join(found)


def _row(root: Path, run_id: str, config: str, summary: str = "{}") -> None:
    with sqlite3.connect(root / "runs.db") as db:
        db.execute("INSERT INTO runs (id, status, created, config, summary) VALUES (?,?,?,?,?)",
                   (run_id, "completed", time.time(), config, summary))


def test_a_run_row_of_100000_nested_brackets_is_listed_as_broken(isolated_artifacts, capsys, monkeypatch):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(isolated_artifacts / "no_default_model"))
    store = RunStore()
    _row(store.root, "20300101-000000-dead", "[" * 100_000)
    _row(store.root, "20300101-000001-dead", "{}", '{"a":' * 100_000)
    _row(store.root, "20300101-000002-dead", "{}", 5)  # a number where JSON text belongs
    runs = {r.id: r for r in store.list()}
    assert "its stored config nests more than 64 levels deep" in runs["20300101-000000-dead"].broken
    assert "its stored summary nests more than 64 levels deep" in runs["20300101-000001-dead"].broken
    assert runs["20300101-000002-dead"].broken
    assert model_choices(store) == []  # none is offered as a model
    assert cli.main(["runs"]) == 0
    out = capsys.readouterr().out
    assert out.count("broken") == 3 and "nests more than 64 levels deep" in out


def test_a_run_row_whose_text_is_not_utf8_is_listed_as_broken(isolated_artifacts, capsys):
    """SQLite fails a whole query on one text cell that is not UTF-8: one damaged row would hide every run."""
    store = RunStore()
    with sqlite3.connect(store.root / "runs.db") as db:
        db.execute("INSERT INTO runs (id, status, created, config, error) VALUES (?, 'failed', 1.0, CAST(x'7b7dff' AS TEXT), "
                   "CAST(x'ff41' AS TEXT))", ("20300101-000000-abcd",))
    [run] = store.list()
    assert run.broken and "\ufffd" in run.error
    assert cli.main(["runs"]) == 0 and "broken" in capsys.readouterr().out


def test_a_calibration_file_of_20000_nested_brackets_is_a_message_naming_it(tmp_path):
    path = tmp_path / calibration.CALIBRATION_FILE
    path.write_text(deep())
    assert path.stat().st_size == 40_000  # under the file's size cap: the depth is what refuses it
    with pytest.raises(CalibrationError, match=re.escape(f"The calibration file {path} cannot be used: it nests more than 64")):
        calibration.read(tmp_path)


@pytest.mark.parametrize("text", [deep(), '{"class_names": ' + deep(100) + "}", '{"class_names": ["a", "b"]' + "]" * 5])
def test_a_hostile_classes_json_is_a_message_naming_it(tmp_path, text):
    (tmp_path / "classes.json").write_text(text)
    with pytest.raises(ClassesError, match=re.escape(str(tmp_path / "classes.json"))):
        model_class_names(tmp_path / "model.keras", 2)


def test_predict_with_a_hostile_calibration_file_says_so_in_a_line(tmp_path, capsys):
    """`predict` on a model whose calibration.json nests 20,000 deep: the old run's tiny model (tests/snapshots)."""
    import shutil

    from conftest import synthetic_images
    from PIL import Image

    from damaged_items import OLD_RUN, USABLE

    folder = tmp_path / "model"
    shutil.copytree(OLD_RUN / "runs" / USABLE, folder)
    (folder / calibration.CALIBRATION_FILE).write_text(deep())
    Image.fromarray(synthetic_images(1, 0)[0][0]).save(tmp_path / "x.png")
    code = cli.main(["predict", "--model", str(folder), str(tmp_path / "x.png")])
    out, err = capsys.readouterr()
    assert code != 0 and "Traceback" not in err and "RecursionError" not in out + err
    assert f"The calibration file {folder / 'calibration.json'} cannot be used: it nests more than 64" in out + err


def test_tf_config_nested_too_deeply_is_refused_in_words(monkeypatch):
    from cifar_core.training import distribute

    monkeypatch.setenv("TF_CONFIG", deep())
    with pytest.raises(distribute.DistributeError, match="TF_CONFIG nests more than 64 levels deep") as err:
        distribute.worker_task()
    assert len(str(err.value)) < 600


def test_other_files_read_back_are_bounded_too(tmp_path):
    """A damaged config.json, export report or kept faithfulness check beside a model reads as absent."""
    from cifar_core.explain import faithfulness
    from cifar_core.predict.inference import trained_with_tta
    from cifar_core.ship import export

    for name in ("config.json", "onnx.json", "check.json"):
        (tmp_path / name).write_text(deep())
    assert trained_with_tta(tmp_path / "model.keras") is False
    assert export.read_report(tmp_path, "onnx") is None
    assert faithfulness.saved_check(tmp_path, "check") is None
