"""Error analysis, Predictions, Classify and Runs pages on a tiny run whose data hides label mistakes and leaks.

AppTest runs the real app.py; the assertions read what the pages show.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from studio import gallery
from cifar_core.data.classes import CLASS_NAMES
from test_pages import open_page, shown

pytestmark = pytest.mark.slow
TILE = re.compile(r"^(true|given): (\w+) (\d+)%(?: · loss ([\d.]+))?$")


@pytest.fixture
def noisy(noisy_run, noisy_data, tmp_path, monkeypatch):
    """The noisy run in a copy of its artifacts (pages write caches beside the model), its data, no shipped model."""
    store, summary = noisy_run
    artifacts = tmp_path / "artifacts"
    shutil.copytree(store.root, artifacts)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(artifacts))
    monkeypatch.setenv("CIFAR10_DIR", str(noisy_data["root"]))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))
    from cifar_core.predict import calibration
    from cifar_core.predict.evaluate import Interpretation
    from cifar_core.runs.store import RunStore

    run = RunStore(artifacts).get(summary["run_id"])
    # The pages show the run's probabilities with its temperature (fitted on its validation images).
    return run, Interpretation.load(run.dir).with_temperature(calibration.temperature(run.dir, bool(run.config.get("tta"))))


def index_of(root: Path, path: Path) -> int:
    """A test image's index as the studio numbers them: class folders in order, files sorted within each."""
    files = [f for d in sorted((root / "test").iterdir()) for f in sorted(d.iterdir())]
    return files.index(path)


def tiles(at) -> list[tuple[str, str, float, float | None]]:
    """(word, class, probability %, loss) of every gallery tile's caption, in page order."""
    found = []
    for caption in at.caption:
        m = TILE.match(caption.value)
        if m:
            found.append((m[1], m[2], float(m[3]), float(m[4]) if m[4] else None))
    return found


def open_tab(at, name: str):
    at.session_state["error_tab"] = name
    return at.run()


def test_top_losses_show_loss_and_true_class_probability_highest_loss_first(noisy):
    run, interp = noisy
    at = open_tab(open_page("error_analysis"), "Top losses")
    assert not at.exception, [e.value for e in at.exception]
    assert any("**highest loss first**" in c.value for c in at.caption)
    shown_tiles = tiles(at)
    mistakes = int((interp.preds != interp.y).sum())
    assert 0 < len(shown_tiles) == min(mistakes, 40)
    losses = [loss for _, _, _, loss in shown_tiles]
    assert losses == sorted(losses, reverse=True)
    expected = interp.top_losses_table(k=len(shown_tiles))
    assert [cls for _, cls, _, _ in shown_tiles] == list(expected["true"])
    np.testing.assert_allclose(losses, expected["loss"], atol=0.006)  # shown with two decimals
    np.testing.assert_allclose([p for _, _, p, _ in shown_tiles], np.round(100 * expected["p_true"]), atol=0.5)


def test_a_flipped_label_is_a_top_loss_and_a_label_issue_candidate(noisy, noisy_data):
    run, interp = noisy
    flipped = {index_of(noisy_data["root"], p) for p in noisy_data["flipped"]}
    top = set(interp.top_losses(None))
    assert len(flipped & top) >= len(flipped) // 2  # a model that learned the classes contradicts most wrong labels

    at = open_tab(open_page("error_analysis"), "Label mistakes")
    assert not at.exception, [e.value for e in at.exception]
    assert any("candidates for a person to check" in i.value for i in at.info)
    assert any("out-of-sample" in c.value for c in at.caption)
    count = int(next(m.value for m in at.metric if m.label == "Candidates among the test images").replace(",", ""))
    from cifar_core.analysis.label_issues import find_label_issues

    candidates = find_label_issues(interp.probs, interp.y, interp.class_names)
    assert count == len(candidates) > 0
    # The tiny model is not confident enough for cleanlab to flag every flip, but what it flags is mostly flips.
    assert len(flipped & set(candidates.index)) >= max(1, len(candidates) // 2)
    given = [t for t in tiles(at) if t[0] == "given"]
    assert [cls for _, cls, _, _ in given] == list(candidates["given"][:40])


def test_leaked_test_images_are_found_and_counted_as_the_data_page_counts_them(noisy, noisy_data, tmp_path):
    from cifar_core.data.health import check_dataset

    run, interp = noisy
    at = open_tab(open_page("error_analysis"), "Duplicates and leaks")
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: int(m.value.replace(",", "")) for m in at.metric if "copy" in m.label}
    report = check_dataset(noisy_data["root"], cache_dir=tmp_path / "cache")["duplicates"]
    # One finder: the Data page's health report and this tab give the same numbers.
    assert metrics["Test images with a copy in train"] == report["leaked_test_images"] >= len(noisy_data["leaked"])
    assert metrics["Test images with a copy in test"] == report["exact"]["within_test"] + report["near"]["within_test"]
    assert metrics["Training images with a copy in train"] == report["exact"]["within_train"] + report["near"]["within_train"]
    planted = [index_of(noisy_data["root"], p) for p in noisy_data["leaked"]]
    leak_captions = [c.value for c in at.caption if c.value.startswith("test #") and "train #" in c.value]
    assert all(any(c.startswith(f"test #{i} ") and c.endswith("exact 1.000") for c in leak_captions) for i in planted)
    assert any("pHash (imagehash)" in c.value for c in at.caption)  # the rule is shown


def test_tile_number_opens_the_detail_with_similar_training_images(noisy):
    run, interp = noisy
    at = open_tab(open_page("error_analysis"), "Top losses")
    first = int(interp.top_losses(1)[0])
    at.button(key=f"error_detail-{first}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key=f"cam_class_{first}").value == CLASS_NAMES[interp.preds[first]]
    assert any(m.value == "**Similar training images**" for m in at.markdown)
    # The search waits to be asked for: the rest of the dialog does not need the training images' features.
    assert not [c for c in at.caption if c.value.startswith("train #")]
    at.toggle(key=gallery.SHOW_SIMILAR).set_value(True).run()
    neighbours = [c.value for c in at.caption if c.value.startswith("train #")]
    assert len(neighbours) == 8
    sims = [float(c.rsplit(" ", 1)[1]) for c in neighbours]
    assert sims == sorted(sims, reverse=True)
    labels = [m.value.strip("*") for m in at.markdown if m.value.strip("*") in CLASS_NAMES]
    assert len(labels) >= 8  # each neighbour shows its label
    at.button(key="error_detail_close").click().run()
    assert not [c for c in at.caption if c.value.startswith("train #")]


def test_detail_of_a_leaked_test_image_shows_its_training_copy_first(noisy, noisy_data):
    from cifar_core.data.loader import load_dataset, split_files

    run, interp = noisy
    root = noisy_data["root"]
    test_files = split_files(str(root), load_dataset(str(root)), "test")
    leaked = test_files.index(str(noisy_data["leaked"][0].resolve()))
    at = open_tab(open_page("error_analysis"), "Top losses")
    at.session_state["error_detail"] = leaked  # as its tile's number does
    at.session_state[gallery.SHOW_SIMILAR] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    neighbours = [c.value for c in at.caption if c.value.startswith("train #")]
    assert len(neighbours) == 8 and neighbours[0].endswith("similarity 1.000")
    assert not any(n.endswith("similarity 1.000") for n in neighbours[1:])  # other images are told apart from it


def test_confusion_tab_outlines_the_picked_cell_and_lists_confused_pairs(noisy):
    run, interp = noisy
    at = open_page("error_analysis")
    true_name, pred_name, n = interp.most_confused()[0]
    assert at.selectbox(key="cell_true").value == true_name and at.selectbox(key="cell_pred").value == pred_name
    chart = next(c for c in at.get("plotly_chart"))
    import json

    figure = json.loads(chart.proto.spec)
    rect = figure["layout"]["shapes"][0]
    assert (rect["x0"] + 0.5, rect["y0"] + 0.5) == (CLASS_NAMES.index(pred_name), CLASS_NAMES.index(true_name))
    pairs = next(df.value for df in at.dataframe if "predicted as" in df.value.columns)
    assert list(pairs.iloc[0]) == [true_name, pred_name, n]
    # The picked cell survives a visit to another tab.
    at.selectbox(key="cell_true").select("cat")
    at.selectbox(key="cell_pred").select("dog").run()
    open_tab(at, "Top losses")
    open_tab(at, "Confusion matrix")
    assert "cat predicted as dog" in shown(at.main)


def test_predictions_page_through_all_images_and_sorted_by_loss_show_it(noisy):
    run, interp = noisy
    at = open_page("predictions")
    assert any("images 1–40 of 100 · page 1 of 3" in c.value for c in at.caption)
    at.pagination[0].set_value(3).run()
    assert any("images 81–100 of 100 · page 3 of 3" in c.value for c in at.caption)
    assert len([b for b in at.button if b.key and b.key.startswith("picked_image-")]) == 20
    next(s for s in at.selectbox if s.label == "Sort by").select("loss, highest first").run()
    assert any("images 1–40 of 100 · page 1 of 3" in c.value for c in at.caption)  # new order, back to page 1
    losses = [loss for _, _, _, loss in tiles(at)]
    assert len(losses) == 40 and losses == sorted(losses, reverse=True)


def test_classify_shows_similar_training_images_for_an_upload(noisy, noisy_data):
    at = open_page("classify")
    at.toggle(key="classify_similar").set_value(True)
    image = next((noisy_data["root"] / "train" / "ship").iterdir())
    at.file_uploader[0].set_value([("my *ship*.png", image.read_bytes(), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    neighbours = [c.value for c in at.caption if c.value.startswith("train #")]
    assert len(neighbours) == 8 and neighbours[0].endswith("similarity 1.000")  # the upload is a training image
    assert "my *ship*.png" in [t.value for t in at.text]  # the file name as plain text, not Markdown


def test_runs_page_lists_the_shipped_model_and_exports_with_a_parity_check(noisy, tmp_path, monkeypatch):
    run, interp = noisy
    shipped = tmp_path / "default"
    shipped.mkdir()
    for name in ("model.keras", "test_probs.npz", "evaluation.json", "history.csv", "config.json"):
        shutil.copy(run.dir / name, shipped / name)
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    at = open_page("runs")
    table = at.dataframe[0].value
    assert "shipped model" in table.index and table.loc["shipped model", "status"] == "shipped"
    assert "shipped model" in at.multiselect[0].value  # its curves are overlaid by default

    next(s for s in at.selectbox if s.label == "Run").select("shipped model").run()
    at.button(key="export_tflite_default").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Download TFLite" in [b.label for b in at.get("download_button")]
    assert any("agrees on 100.0% of 100 test images" in c.value for c in at.caption)
    assert not list(shipped.glob("*.tflite"))  # the shipped folder is never written to

    from cifar_core.ship import export

    monkeypatch.setattr(export, "FLOAT_MIN_AGREEMENT", 1.01)  # a bar no export clears
    at.button(key="export_savedmodel_default").click().run()
    assert any("Do not use it" in e.value for e in at.error)
    assert "Download SavedModel" not in [b.label for b in at.get("download_button")]
