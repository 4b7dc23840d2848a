"""The Error analysis page's reliability diagram and the calibrated probabilities the pages show,
on the shipped model's saved test predictions (no data folder: nothing is predicted or decoded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cifar_core.predict import calibration
from cifar_core.predict.evaluate import Interpretation
from test_pages import open_page, shown, unescape

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """The shipped model's files in a folder of their own, its config pointing at no data folder."""
    folder = tmp_path / "default"
    folder.mkdir()
    (folder / "model.keras").symlink_to(SHIPPED / "model.keras")  # listed, never loaded without test images
    for name in ("test_probs.npz", "evaluation.json", "history.csv", "classes.json", "calibration.json"):
        shutil.copy(SHIPPED / name, folder / name)
    config = json.loads((SHIPPED / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "data_dir": None}))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(folder))
    return folder


def calibration_tab():
    at = open_page("error_analysis")
    at.session_state["error_tab"] = "Calibration"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def reliability_spec(at) -> dict:
    chart = next(c for c in at.get("plotly_chart") if c.proto.id and "reliability_chart" in c.proto.id)
    return json.loads(chart.proto.spec)


def test_the_reliability_diagram_shows_both_calibrations_with_counts(shipped):
    saved = Interpretation.load(shipped)
    stored = calibration.read(shipped)
    calibrated = calibration.apply_temperature(saved.probs, stored.temperature)
    at = calibration_tab()
    figure = reliability_spec(at)
    titles = [a["text"] for a in figure["layout"]["annotations"]]
    assert titles == [f"as the model gives them · ECE {calibration.ece(saved.probs, saved.y):.3f}",
                      f"calibrated, T = {stored.temperature:.3f} · ECE {calibration.ece(calibrated, saved.y):.3f}"]
    bars = [t for t in figure["data"] if t["type"] == "bar"]
    assert len(bars) == 2
    for bar, probs in zip(bars, (saved.probs, calibrated)):
        table = calibration.reliability(probs, saved.y)
        used = table[table["count"] > 0]
        # Plotly serialises arrays in binary form; the counts written on the bars are plain text.
        assert [int(n.replace(",", "")) for n in bar["text"]] == list(used["count"])
        assert sum(int(n.replace(",", "")) for n in bar["text"]) == len(saved.y)
    ece_metric = next(m.value for m in at.metric if m.label == "Expected calibration error")
    assert ece_metric == f"{calibration.ece(saved.probs, saved.y):.3f} → {calibration.ece(calibrated, saved.y):.3f}"
    # What the temperature rests on, and why it was kept (issue 24).
    assert f"rests on {stored.images:,} validation images, {stored.mistakes:,} of them wrong: kept, because" in unescape(shown(at.main))


def test_the_pages_predictions_are_calibrated_and_a_model_without_a_temperature_is_shown_as_it_gives_them(shipped):
    from cifar_core.runs.model_choice import model_choices
    from cifar_core.runs.store import RunStore
    from cifar_core.predict.split_predictions import saved_predictions

    saved = Interpretation.load(shipped)
    stored = calibration.read(shipped)
    choice = model_choices(RunStore())[0]
    assert choice.folder == shipped
    pages_see = saved_predictions(choice)  # what Predictions and Error analysis show without test images
    np.testing.assert_allclose(pages_see.probs, calibration.apply_temperature(saved.probs, stored.temperature), atol=1e-6)
    np.testing.assert_array_equal(pages_see.preds, saved.preds)

    (shipped / calibration.CALIBRATION_FILE).unlink()
    np.testing.assert_array_equal(saved_predictions(choice).probs, saved.probs)
    at = calibration_tab()
    figure = reliability_spec(at)
    assert [a["text"] for a in figure["layout"]["annotations"]] == [
        f"as the model gives them · ECE {calibration.ece(saved.probs, saved.y):.3f}"]
    assert "no temperature" in shown(at.main)


def test_a_damaged_calibration_file_is_a_message_on_the_model_pages(shipped):
    (shipped / calibration.CALIBRATION_FILE).write_text("{ damaged")
    for page in ("predictions", "error_analysis"):
        at = open_page(page)
        assert "cannot be used" in shown(at.main) and "calibrate" in shown(at.main)


def test_a_temperature_kept_at_one_says_why_on_the_calibration_tab(shipped):
    saved = Interpretation.load(shipped)
    few = calibration.fit(saved.probs[:30], saved.y[:30], tta=True)  # as a run with 30 validation images stores it
    calibration.write(shipped, few)
    at = calibration_tab()
    figure = reliability_spec(at)
    assert len([t for t in figure["data"] if t["type"] == "bar"]) == 1  # nothing to draw "after": T = 1
    assert "rests on 30 validation images" in unescape(shown(at.main)) and "at least 50 validation images" in unescape(shown(at.main))
    assert "no temperature" not in shown(at.main)
