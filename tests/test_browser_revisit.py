"""Every page, visited again and again in a real browser, never shows an error.

A cached function that draws (a progress bar, say) is replayed on its next cache hit, onto a
page that no longer has the element it drew into: Streamlit then fails that page with
CacheReplayClosureError, for every browser session, until the entry is evicted. Only a
second visit shows it, so this test makes them: on a fresh artifacts folder (the shipped
model, empty caches) it visits every page twice, then once more in a second browser context,
then twice after a server restart (caches on disk, none in memory).
"""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest
from PIL import Image
from test_browser import CHROMIUM, CHROMIUM_ARGS, ROOT, SHOTS, dashboard, wait_idle

from studio.pages import PAGES

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

# Chromium's stand-in camera (a test pattern) granted without asking: Classify's camera input takes a real photo.
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
ERROR_TABS = ["Top losses", "Embedding map", "Label mistakes", "Duplicates and leaks", "Confusion matrix"]
# Streamlit's exception box, the box it shows instead when details are hidden, and the app's own st.error boxes.
ERRORS = "[data-testid='stException'], [data-testid='stAlertContentError']"
REDACTED = "This app has encountered an error"


def archive() -> bytes:
    """A zip of class folders (5 PNGs in each of CIFAR-10's classes, in one wrapping folder), as a user brings one."""
    from conftest import synthetic_images

    from cifar_core.data.classes import CLASS_NAMES

    buf = io.BytesIO()
    x, y = synthetic_images(5, seed=7)
    with zipfile.ZipFile(buf, "w") as zf:
        for i, (image, label) in enumerate(zip(x, y)):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            zf.writestr(f"shapes/{CLASS_NAMES[label]}/{i}.png", png.getvalue())
    return buf.getvalue()


def check(page, where: str) -> None:
    """Fail, with the error's text and a screenshot, if the page shows any error."""
    wait_idle(page)
    boxes = page.locator(ERRORS)
    texts = [boxes.nth(i).inner_text() for i in range(boxes.count())]
    body = page.locator("body").inner_text()
    if texts or REDACTED in body:
        SHOTS.mkdir(exist_ok=True)
        path = SHOTS / f"revisit_error_{where.replace('/', '_').replace(' ', '_')}.png"
        page.screenshot(path=str(path), full_page=True)
        pytest.fail(f"{where}: the page shows an error: {texts or [REDACTED]} (screenshot {path})")


def visit(page, url: str, path: str, where: str, *, deep: bool) -> None:
    """Open one page and wait until its script run ends; with `deep`, also open what it hides behind clicks."""
    page.goto(f"{url}/{path}")
    page.wait_for_function("document.querySelector('h1') || document.querySelector(\"[data-testid='stException']\")")
    check(page, f"{where} /{path}")
    if not deep:
        return
    if path == "error_analysis":
        for tab in ERROR_TABS:
            page.get_by_role("tab", name=tab).click()
            check(page, f"{where} /{path} tab {tab}")
    elif path == "runs":
        # An export reads the test images from the cache the other pages filled (it crashed there once).
        page.get_by_role("button", name="SavedModel", exact=True).click()
        page.get_by_text("Download SavedModel").or_(page.locator(ERRORS)).first.wait_for()
        check(page, f"{where} /{path} export")
    elif path == "data":
        # An archive dropped in is imported (the page draws its progress) and becomes the active dataset.
        page.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
            files=[{"name": "shapes.zip", "mimeType": "application/zip", "buffer": archive()}])
        page.get_by_role("button", name="Import", exact=True).click()
        page.get_by_text("Imported shapes: 10 classes").or_(page.locator(ERRORS)).first.wait_for()
        check(page, f"{where} /{path} import")
    elif path == "classify":
        # A photo from the camera goes through the uploads' path to the same results.
        page.get_by_text("Use the camera").click()
        # A photo taken before the stream has a frame is empty: wait until the video plays.
        page.wait_for_function("[...document.querySelectorAll('video')].some(v => v.readyState >= 2 && v.videoWidth > 0)")
        page.get_by_role("button", name="Take Photo").click()
        page.get_by_text("1 of 1 image(s) classified").or_(page.locator(ERRORS)).first.wait_for()
        check(page, f"{where} /{path} camera photo")
    elif path == "predictions":
        # An image's detail: its explanation map, every class probability, the training images most like it.
        page.locator("[data-testid='stMain'] button").filter(has_text="#").first.click()
        page.get_by_text("Similar training images").wait_for()
        check(page, f"{where} /{path} image detail")


def tour(context, url: str, where: str, rounds: int, deep: bool = False) -> None:
    """Every page `rounds` times in one browser context: later visits hit the caches the first one filled.
    With `deep`, the first visit also opens the tabs, an image's detail and an export."""
    page = context.new_page()
    page.set_default_timeout(300_000)  # the first visit imports TensorFlow and decodes the images
    for round_ in range(1, rounds + 1):
        for listed in PAGES:
            visit(page, url, listed.url_path, f"{where}, visit {round_},", deep=deep and round_ == 1)
    page.close()


def test_every_page_twice_in_two_contexts_and_after_a_restart(tiny_data, tmp_path):
    from playwright.sync_api import sync_playwright

    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    shipped = shutil.copytree(ROOT / "artifacts" / "default", artifacts / "default")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + FAKE_CAMERA)
        try:
            with dashboard(artifacts, tiny_data, shipped=shipped) as url:
                # Twice in the first context; once (all of it a cache hit) in the second.
                for where, rounds in (("first browser context", 2), ("second browser context", 1)):
                    context = browser.new_context(viewport={"width": 1400, "height": 1200}, permissions=["camera"])
                    try:
                        tour(context, url, where, rounds, deep=where.startswith("first"))
                    finally:
                        context.close()
            with dashboard(artifacts, tiny_data, shipped=shipped) as url:
                context = browser.new_context(viewport={"width": 1400, "height": 1200}, permissions=["camera"])
                try:
                    tour(context, url, "after a server restart", 2)
                finally:
                    context.close()
        finally:
            browser.close()
