"""Classify's camera input: a photo goes through the uploads' checks and results display."""

from __future__ import annotations

import io

from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from tests.test_pages import no_shipped_model, open_page, shown, unescape, with_data, with_run  # noqa: F401 (fixtures)


def jpeg_of(path) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


def test_camera_is_off_until_asked_for(with_run):
    at = open_page("classify")
    assert not at.camera_input  # the browser is not asked for the camera on every visit
    at.toggle(key="classify_use_camera").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.camera_input) == 1 and "image(s) classified" not in shown(at.main)  # nothing before a photo is taken


def test_a_photo_is_classified_like_an_upload_and_beside_them(with_run, tiny_data):
    at = open_page("classify")
    at.toggle(key="classify_use_camera").set_value(True).run()
    cat = next((tiny_data / "test" / "cat").iterdir())
    at.camera_input[0].set_value(("image.jpg", jpeg_of(cat), "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "1 of 1 image(s) classified" in [s.value for s in at.subheader]
    assert [t.value for t in at.text] == ["camera photo.jpg"]
    top = [m.value for m in at.markdown if m.value.startswith("### ")]
    assert len(top) == 1 and unescape(top[0].split(" · ")[0][4:]) in CLASS_NAMES
    assert "top 3 of 10 classes" in shown(at.main)

    # With uploads too: one list, the photo last, each checked alike.
    at.file_uploader[0].set_value([("dog.png", next((tiny_data / "test" / "dog").iterdir()).read_bytes(), "image/png"),
                                   ("notes.png", b"not an image", "image/png")]).run()
    assert "2 of 3 image(s) classified" in [s.value for s in at.subheader]
    assert [t.value for t in at.text] == ["dog.png", "notes.png", "camera photo.jpg"]
    assert len(at.error) == 1 and "not a readable image" in at.error[0].value


def test_an_unreadable_photo_gets_the_uploads_message(with_run):
    at = open_page("classify")
    at.toggle(key="classify_use_camera").set_value(True).run()
    at.camera_input[0].set_value(("image.jpg", b"\xff\xd8\xff truncated", "image/jpeg")).run()
    assert not at.exception, [e.value for e in at.exception]
    assert "0 of 1 image(s) classified" in [s.value for s in at.subheader]
    assert len(at.error) == 1 and unescape(at.error[0].value).startswith("Could not classify this file: not a readable image")
