"""Runs page: a live run whose process cannot be checked says so, blocks nothing, and can be marked failed."""

from __future__ import annotations

import os
import shutil

import pytest

from cifar_core.runs.store import RunStore
from test_pages import open_page
from test_store_healing import add_row

pytestmark = pytest.mark.slow  # AppTest imports TensorFlow and the tiny run's model


def test_an_unknown_run_is_shown_as_such_and_can_be_marked_failed(tiny_run, tiny_data, tmp_path, monkeypatch):
    copy = tmp_path / "artifacts"
    shutil.copytree(tiny_run[0].root, copy)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(copy))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))
    store = RunStore(copy)
    add_row(store, "20260101-000000-ffff", pid=os.getpid(), host="renamed-machine")

    at = open_page("runs")
    assert at.dataframe[0].value.loc["20260101-000000-ffff", "status"] == "unknown"
    at.selectbox[0].select("20260101-000000-ffff").run()
    assert any("renamed" in w.value and "cannot check" in w.value for w in at.warning), [w.value for w in at.warning]
    at.button(key="repair_20260101-000000-ffff").click().run()
    assert not at.exception
    assert store.get("20260101-000000-ffff").status == "failed"
