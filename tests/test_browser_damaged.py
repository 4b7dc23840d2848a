"""In a real browser (issue 25, "What to build" 3 and 7): with one of each damaged kind planted beside a usable model
(tests/damaged_items.py: a run row of 100,000 nested brackets, models whose calibration.json or classes.json nest
20,000 deep, an imported dataset with a hostile dataset.json and a latin-1 class folder), every page renders, names
the damaged items, and keeps the usable model usable; and no page asks for anything outside the machine."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, dashboard, wait_idle

import damaged_items as planted
from studio.pages import PAGES

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]

CRASHED = ("This app has encountered an error", "Traceback", "RecursionError", "UnicodeEncodeError")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def outside(url: str) -> bool:
    """Whether a request leaves the machine: any address but the loopback one (data: and blob: URLs stay inside)."""
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and (parts.hostname or "") not in LOOPBACK


def show(page, url: str, path: str, shot: str | None = None) -> str:
    """Open a page, wait until its script run ends, fail if it crashed; its text (sidebar and main)."""
    page.goto(f"{url}/{path}")
    page.wait_for_function("document.querySelector('h1') || document.querySelector(\"[data-testid='stException']\")")
    wait_idle(page)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSkeleton\"]')")  # every table drawn
    text = page.locator("body").inner_text()
    crashed = [c for c in CRASHED if c in text] + (["exception box"] if page.locator("[data-testid='stException']").count() else [])
    if shot or crashed:
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{shot or 'damaged_crash_' + (path.split('?')[0] or 'home')}.png"), full_page=True)
    assert not crashed, f"/{path}: {crashed}: {text[:1500]}"
    return text


def test_every_page_with_damaged_items_renders_names_them_and_fetches_nothing_outside(tmp_path, tiny_data):
    from playwright.sync_api import sync_playwright

    artifacts = planted.plant(tmp_path / "artifacts")
    requests: list[str] = []
    with sync_playwright() as p, dashboard(artifacts, tiny_data) as url:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 1200})
            # Every request the pages make is seen here; one to another machine is recorded and never sent.
            context.route("**/*", lambda route: (requests.append(route.request.url), route.abort()) if outside(route.request.url)
                          else route.continue_())
            page = context.new_page()
            page.set_default_timeout(300_000)  # the first visit imports TensorFlow and loads the model
            for listed in PAGES:
                text = show(page, url, listed.url_path, shot="damaged_runs" if listed.name == "runs" else None)
                assert f"Dataset {planted.DATASET} is damaged and not offered" in text, listed.name
                assert f"Damaged run(s), not offered: {planted.HOSTILE_ROW}" in text, listed.name
                assert "2 model(s) marked damaged" in text, listed.name
                if listed.name == "runs":
                    assert "3 run(s) are broken" in text and planted.HOSTILE_ROW in text
                if listed.name in ("predictions", "error_analysis"):  # the usable model is the default, and works
                    assert f"run {planted.USABLE}" in text and "cannot be used" not in text
            for model, file in ((planted.BAD_CALIBRATION, "calibration.json"), (planted.BAD_CLASSES, "classes.json")):
                for name in ("classify", "predictions", "error_analysis"):
                    text = show(page, url, f"{name}?model={model}", shot=f"damaged_{file.split('.')[0]}_{name}")
                    assert f"{model}/{file}" in text and "nests more than 64 levels deep" in text, (model, name, text[:1500])
            text = show(page, url, "?data=" + "x" * 300 + "&model=" + "y" * 300, shot="damaged_address")
            assert "The dataset named in the address is 300 characters long" in text
            assert "The model named in the address is 300 characters long" in text
            context.close()
        finally:
            browser.close()
    assert not requests, f"requests to other machines: {sorted(set(requests))}"
