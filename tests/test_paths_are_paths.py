"""Paths are paths (issue 25, points 8 and 13): the artifacts folder is opened as a path, whatever characters it
holds, and a long or odd `?data=` / `?model=` in the address is refused in words while the page renders."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cifar_core.cli import main as cli
from cifar_core.runs.db import file_uri
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
ODD_FOLDERS = ["a#b", "a?mode=memory", "a%23b", "a b", "a#b?c=d%20e"]


@pytest.mark.parametrize("name", ODD_FOLDERS)
def test_an_artifacts_folder_with_uri_characters_is_opened_as_itself(tmp_path, monkeypatch, capsys, name):
    art = tmp_path / name
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(art))
    assert cli.main(["runs"]) == 0 and "no runs yet" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing made beside it ("a" before the '#')
    assert sorted(p.name for p in art.iterdir()) == ["runs", "runs.db"]
    with sqlite3.connect(art / "runs.db") as db:  # the index is the file in that folder
        assert {"runs", "metrics"} <= {n for (n,) in db.execute("SELECT name FROM sqlite_master")}


@pytest.mark.parametrize("name", ODD_FOLDERS)
def test_the_foreign_index_guard_runs_in_a_folder_with_uri_characters(tmp_path, name):
    art = tmp_path / name
    art.mkdir()
    with sqlite3.connect(art / "runs.db") as db:
        db.execute("CREATE TABLE people (name TEXT)")
    before = (art / "runs.db").read_bytes()
    with pytest.raises(RunError, match="not this studio's run index"):
        RunStore(art)
    assert (art / "runs.db").read_bytes() == before  # no table added, not switched to WAL
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_file_uri_escapes_what_a_uri_would_read():
    assert file_uri(Path("/x/a#b?c%d e"), "mode=ro") == "file:/x/a%23b%3Fc%25d%20e?mode=ro"


# ---------------------------------------------------------------- the address


LONG = "x" * 300
ODD_VALUES = [LONG, "/" * 300, "a/" * 200, "../../etc", "a/b", "..", "x\x00y", "line\nbreak", "tab\there", "\x1b[31m",
              "caf\u00e9-unknown", "does-not-exist", "/no/such/folder"]


def sidebar_app(param: str, value: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params[param] = value
    return at.run()


@pytest.fixture
def no_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))


@pytest.mark.parametrize("value", ODD_VALUES)
def test_an_odd_data_value_in_the_address_is_refused_in_words(no_model, value):
    at = sidebar_app("data", value)
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "using the default" in warnings and ("characters" in warnings or "not found" in warnings), warnings
    assert at.sidebar.selectbox[0].value == "default"
    assert at.query_params["data"] in ("default", ["default"])  # the address now names what is shown
    assert len(warnings) < 400


def test_a_folder_in_the_address_is_used_in_place(no_model, tiny_data):
    at = sidebar_app("data", str(tiny_data))
    assert not at.exception and not at.sidebar.warning
    assert at.sidebar.selectbox[0].value == str(tiny_data)


@pytest.mark.parametrize("value", [LONG, "x\x00y", "../default", "default/..", "20300101-000000-dead"])
def test_an_odd_model_value_in_the_address_is_refused_in_words(tmp_path, monkeypatch, value):
    """With the shipped model as the one model: the page shows it and says why the address was not followed."""
    at = sidebar_app("model", value)
    assert not at.exception, [e.value for e in at.exception]
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "showing the shipped default model" in warnings and len(warnings) < 400, warnings
    assert at.query_params["model"] in ("default", ["default"])
