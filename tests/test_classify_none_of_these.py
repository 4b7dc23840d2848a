"""Classify says "none of these" beside the top classes, and classifies with an uploaded bundle (issue 24)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_bundle import NAMES, model_folder  # noqa: F401 (fixture)
from tests.test_pages import open_page, shown, unescape

SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"
NONE_OF_THESE = "This looks like none of the classes the model knows."


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def shipped(monkeypatch):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(SHIPPED))


def test_a_flat_colour_reads_none_of_these_and_a_cifar_photo_does_not(shipped, shared_data):
    from cifar_core.predict import ood

    threshold = ood.read(SHIPPED).threshold
    ship = next((shared_data / "test" / "ship").iterdir())
    at = open_page("classify")
    at.file_uploader[0].set_value([("green.png", png(np.full((32, 32, 3), (40, 160, 60), np.uint8)), "image/png"),
                                   ("ship.jpg", ship.read_bytes(), "image/jpeg")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "2 of 2 image(s) classified" in [s.value for s in at.subheader]
    warnings = [unescape(w.value) for w in at.warning if NONE_OF_THESE in unescape(w.value)]  # the sidebar has its own
    assert len(warnings) == 1 and f"below the threshold {threshold:.2f}" in warnings[0]
    assert "Looks like the images the model learned from" in unescape(shown(at.main))
    top = [unescape(m.value) for m in at.markdown if m.value.startswith("### ")]
    assert top[1].startswith("### ship")  # the photo is still classified, and not flagged


def test_an_uploaded_bundle_classifies_with_its_own_names(shipped, model_folder, tmp_path):  # noqa: F811
    from cifar_core.ship.bundle import bundle_bytes

    at = open_page("classify")
    at.file_uploader(key="classify_bundle").set_value(("mine.zip", bundle_bytes(model_folder), "application/zip")).run()
    at.file_uploader[0].set_value([("photo.png", png(np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)), "image/png")]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Classifying with the uploaded bundle mine.zip: 3 classes" in unescape(shown(at.main))
    top = [unescape(m.value) for m in at.markdown if m.value.startswith("### ")]
    assert len(top) == 1 and top[0][4:].split(" · ")[0] in NAMES
    assert "top 3 of 3 classes" in shown(at.main) and "temperature 0.500" in shown(at.main)


def test_a_zip_that_is_not_a_bundle_is_one_message(shipped, tmp_path):
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "hello")
    at = open_page("classify")
    at.file_uploader(key="classify_bundle").set_value(("notes.zip", buffer.getvalue(), "application/zip")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "This bundle cannot be used" in at.error[0].value and "not a model bundle" in at.error[0].value
