"""No single file takes every page down (issue 25, point 7 and "What to build" 3): with a run row of 100,000
nested brackets, a model whose calibration.json or classes.json nests 20,000 deep, and an imported dataset with a
hostile dataset.json and a latin-1 class folder (tests/damaged_items.py), the sidebar and every page render, and
each damaged item is named as damaged. tests/test_browser_damaged.py does the same in a browser with a usable
model beside them."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import damaged_items as planted
from studio.pages import PAGES

ROOT = Path(__file__).resolve().parents[1]
MODEL_PAGES = ("classify", "predictions", "error_analysis")


def text_of(node) -> str:
    """Every string an element tree shows (labels, values, bodies, options), one per line."""
    parts = []
    for attr in ("label", "value", "body", "options"):
        value = getattr(node, attr, None) if attr != "value" or not hasattr(node, "children") else None
        parts += [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    proto = getattr(node, "proto", None)
    if proto is not None and hasattr(proto, "options"):
        parts += [str(o) for o in proto.options]
    for child in getattr(node, "children", {}).values():
        parts.append(text_of(child))
    return "\n".join(p for p in parts if p).replace("\\", "")


@pytest.fixture
def damaged(tmp_path, tiny_data, monkeypatch):
    art = planted.plant(tmp_path / "art", usable=False)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(art))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))
    return art


def visit(name: str, **params: str) -> AppTest:
    page = next(p for p in PAGES if p.name == name)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    for key, value in params.items():
        at.query_params[key] = value
    at.run()
    if not page.default:
        at.switch_page(page.file).run()
    assert not at.exception, (name, [e.value for e in at.exception])
    return at


@pytest.mark.parametrize("name", [p.name for p in PAGES])
def test_every_page_renders_and_names_the_damaged_items(damaged, name):
    at = visit(name)
    sidebar = text_of(at.sidebar)
    assert f"Dataset {planted.DATASET} is damaged and not offered" in sidebar
    assert "caf" in sidebar and "not UTF-8 text" in sidebar
    assert f"Damaged run(s), not offered: {planted.HOSTILE_ROW}" in sidebar
    picker = at.sidebar.selectbox[1]  # the two damaged models are offered, marked so (no other model is there)
    assert len(picker.options) == 2 and all(option.endswith(" · damaged") for option in picker.options), picker.options
    main = text_of(at.main)
    if name in MODEL_PAGES:  # with no usable model, the pick is the damaged one that learned the active dataset
        # (the model whose classes.json is damaged has no readable record of its dataset: it comes after)
        assert f"{planted.BAD_CALIBRATION}/calibration.json cannot be used" in main, main[:2000]
    if name == "runs":
        assert "3 run(s) are broken" in main
    if name == "data":  # the datasets table lists it with why
        table = at.dataframe[0].value
        assert table.loc[table["name"] == planted.DATASET, "problem"].str.contains("not UTF-8 text").all()


@pytest.mark.parametrize("name", MODEL_PAGES)
def test_a_model_whose_classes_file_nests_20000_deep_is_a_message(damaged, name):
    at = visit(name, model=planted.BAD_CLASSES)
    assert f"{planted.BAD_CLASSES}/classes.json nests more than 64 levels deep" in text_of(at.main)


@pytest.mark.parametrize("name", MODEL_PAGES)
def test_a_model_whose_calibration_file_nests_20000_deep_is_a_message(damaged, name):
    at = visit(name, model=planted.BAD_CALIBRATION)
    main = text_of(at.main)
    assert f"The calibration file {damaged}/runs/{planted.BAD_CALIBRATION}/calibration.json cannot be used" in main
    assert "nests more than 64 levels deep" in main


def test_the_runs_table_says_why_each_is_broken(damaged):
    at = visit("runs")
    table = at.dataframe[0].value
    problems = dict(zip(table.index, table["problem"]))
    assert "its stored config nests more than 64 levels deep" in problems[planted.HOSTILE_ROW]
    assert "classes.json nests more than 64 levels deep" in problems[planted.BAD_CLASSES]
    assert "calibration.json cannot be used" in problems[planted.BAD_CALIBRATION]
    assert set(table.loc[[planted.HOSTILE_ROW, planted.BAD_CLASSES, planted.BAD_CALIBRATION], "status"]) == {"broken"}


def test_a_damaged_dataset_named_in_the_address_falls_back_to_the_default(damaged):
    at = visit("home", data=planted.DATASET)  # said on the visit that follows the link
    assert at.sidebar.selectbox[0].value == "default"
    assert f"Dataset {planted.DATASET} not found; using the default" in text_of(at.sidebar)
