"""CSV that spreadsheets cannot run (issue 25, point 14): every CSV download escapes text cells and headers that
begin with '=', '+', '-', '@', a tab or a carriage return (OWASP's rule), numbers stay numbers, and the CSV files
the studio reads back (history.csv, a Kaggle trainLabels.csv) round-trip exactly."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cifar_core.analysis.label_issues import find_label_issues
from cifar_core.base import spreadsheet
from cifar_core.predict.evaluate import Interpretation
from cifar_core.views import downloads

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = ('=HYPERLINK("http://example.invalid/","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "-2+3", "\tTAB", "\rCR")
# A line break inside a name must stay inside its (quoted) cell: bare, the "=" would start a row, and a formula.
CLASSES = HOSTILE + ("cat", "café", "x\r=SUM(1)", "y\n@A1")


def rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def formula_cells(table: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would run: text starting with a formula character (numbers such as -0.5 are data)."""
    return [cell for row in table for cell in row if cell.startswith(spreadsheet.FORMULA_STARTS) and not _number(cell)]


def _number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def interpretation() -> Interpretation:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(len(CLASSES)), size=60).astype(np.float32)
    y = np.arange(60) % len(CLASSES)
    probs[:6] = np.eye(len(CLASSES))[(y[:6] + 1) % len(CLASSES)] * 0.97 + 0.03 / len(CLASSES)  # confident mistakes
    return Interpretation(probs, y, CLASSES)


def test_the_predictions_csv_escapes_class_names_in_cells_and_headers():
    interp = interpretation()
    table = rows(downloads.predictions_csv(interp))
    assert not formula_cells(table), formula_cells(table)
    header = table[0]
    assert header[:8] == ["image", "true", "predicted", "confidence", "p_true", "loss", "correct", "uncertain"]
    assert header[8:] == [f"p_{c}" for c in CLASSES]  # "p_=…" does not start a formula: kept as it is
    shown = {row[1] for row in table[1:]}
    assert {"'" + c for c in HOSTILE} <= shown and set(CLASSES[len(HOSTILE):]) <= shown  # escaped, and the rest as it is
    # Numbers stay numbers: every probability reads back as the same float.
    frame = pd.read_csv(io.BytesIO(downloads.predictions_csv(interp)))
    np.testing.assert_allclose(frame[[f"p_{c}" for c in CLASSES]].to_numpy(), interp.probs, rtol=1e-6)  # no row split
    assert len(table) == len(frame) + 1 == len(interp.y) + 1
    assert frame["loss"].dtype == np.float64 and frame["correct"].dtype == bool


def test_the_candidates_csv_escapes_class_names():
    interp = interpretation()
    issues = find_label_issues(interp.probs, interp.y, CLASSES)
    assert len(issues)
    table = rows(downloads.candidates_csv(issues))
    assert table[0] == ["image", "given", "suggested", "p_given", "p_suggested"]
    assert not formula_cells(table), formula_cells(table)
    assert any(cell.startswith("'") for row in table[1:] for cell in row[1:3])
    frame = pd.read_csv(io.BytesIO(downloads.candidates_csv(issues)), index_col="image")
    np.testing.assert_allclose(frame["p_given"].to_numpy(), issues["p_given"].to_numpy())


def test_headers_and_index_labels_are_escaped_and_negative_numbers_are_not():
    frame = pd.DataFrame({"=1+1": ["=x", "ok"], "-n": [-1.5, 2.0]}, index=pd.Index(["@a", "b"], name="+i"))
    table = rows(spreadsheet.to_csv(frame))
    assert table == [["'+i", "'=1+1", "'-n"], ["'@a", "'=x", "-1.5"], ["b", "ok", "2.0"]]
    assert rows(spreadsheet.to_csv(frame.reset_index(drop=True), index_label="=lab"))[0][0] == "'=lab"


def test_every_csv_download_goes_through_the_spreadsheet_rule():
    """The family: each download_button of CSV in the pages takes its bytes from views.downloads (which writes
    through base.spreadsheet), never from a DataFrame's own to_csv."""
    for path in sorted((ROOT / "app_pages").glob("*.py")) + sorted((ROOT / "studio").glob("*.py")):
        text = path.read_text()
        assert ".to_csv(" not in text, f"{path.name} writes CSV itself"
        for call in re.findall(r"download_button\((?:[^()]|\([^()]*\))*\)", text, re.S):
            if "text/csv" in call or ".csv" in call:
                assert "downloads." in call, f"{path.name}: {call[:80]}"
    source = (ROOT / "cifar_core" / "views" / "downloads.py").read_text()
    assert source.count("spreadsheet.to_csv(") == source.count("\ndef ")  # each download's bytes: one call each


def test_history_csv_is_read_back_exactly(tmp_path):
    """history.csv is written by the trainer with pandas' own to_csv (no escaping: it holds numbers and phase names)
    and read back by the Runs page for the shipped model."""
    from cifar_core.runs.model_choice import ModelChoice, history

    frame = pd.DataFrame({"phase": ["head", "finetune"], "epoch": [1, 2], "step": [1, 2], "ts": [1.5, 2.5],
                          "accuracy": [0.25, 0.5], "loss": [-0.0, 1e-9], "lr": [0.1, 0.0]})
    frame.to_csv(tmp_path / "history.csv", index=False)
    choice = ModelChoice("m", "default", tmp_path / "model.keras", tmp_path, None, {}, None)
    pd.testing.assert_frame_equal(history(choice, None), frame)


@pytest.mark.parametrize("label", ["=cat", "+dog", "@bird", "-frog", "cat"])
def test_kaggle_labels_are_read_as_written(tmp_path, label):
    """trainLabels.csv is read as it is: a label is never unescaped (nothing the studio writes is read there)."""
    from cifar_core.data.layouts.kaggle import Kaggle

    (tmp_path / "train").mkdir()
    with open(tmp_path / "trainLabels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["id", "label"], [1, label], [2, "other"]])
    assert set(Kaggle().classes(tmp_path)) == {label, "other"}
