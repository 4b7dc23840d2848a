"""Error analysis end to end in Chromium: lasso the embedding map, page its gallery, open an image's similar
training images, and read the top losses, on a tiny run whose data hides label mistakes and leaks.

Screenshots go to tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import re
import shutil

import pytest

from test_browser import CHROMIUM, SHOTS, browser, dashboard, page, shot, wait_idle  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
LOSS_TILE = re.compile(r"^true: \w+ \d+% · loss ([\d.]+)$")


@pytest.fixture(scope="module")
def noisy_server(noisy_run, noisy_data, tmp_path_factory):
    store, _ = noisy_run
    artifacts = tmp_path_factory.mktemp("browser_noisy") / "artifacts"
    shutil.copytree(store.root, artifacts)
    with dashboard(artifacts, noisy_data["root"]) as url:
        yield url


def open_tab(page, url: str, name: str) -> None:
    page.goto(f"{url}/error_analysis")
    page.get_by_role("tab", name=name).click()
    wait_idle(page)


def lasso_everything(page) -> None:
    """Draw a lasso around the whole plotting area of the first chart on the page."""
    area = page.locator(".stPlotlyChart .nsewdrag").first
    area.wait_for()
    box = area.bounding_box()
    x0, y0, x1, y1 = box["x"] + 3, box["y"] + 3, box["x"] + box["width"] - 3, box["y"] + box["height"] - 3
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 1)):
        page.mouse.move(x, y, steps=12)
    page.mouse.up()


def test_lasso_on_the_embedding_map_opens_a_gallery_that_pages(noisy_server, page):
    open_tab(page, noisy_server, "Embedding map")
    page.locator(".stPlotlyChart .scatterlayer .points path").first.wait_for()
    lasso_everything(page)
    heading = page.get_by_text(re.compile(r"selected image\(s\)"))
    heading.wait_for()
    assert heading.inner_text().startswith("100 selected image(s)")  # every test image is inside the lasso
    wait_idle(page)
    shot(page, "error_analysis_map_selection")
    page.get_by_text("images 1–40 of 100 · page 1 of 3", exact=False).wait_for()
    page.locator("[data-testid='stPagination'] button", has_text=re.compile(r"^2$")).first.click()
    page.get_by_text("images 41–80 of 100 · page 2 of 3", exact=False).wait_for()


def test_similar_training_images_open_for_a_test_image(noisy_server, page):
    open_tab(page, noisy_server, "Top losses")
    page.get_by_role("button", name=re.compile(r"^#\d+$")).first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Similar training images").wait_for()
    dialog.get_by_text("Show the training images most like this one").click()
    neighbours = dialog.get_by_text(re.compile(r"^train #\d+ · similarity [\d.]+$"))
    neighbours.nth(7).wait_for()
    assert neighbours.count() == 8
    wait_idle(page)
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(SHOTS / "error_analysis_detail.png"))  # the dialog, not the page's top


def test_top_losses_tiles_show_their_loss_highest_first(noisy_server, page):
    open_tab(page, noisy_server, "Top losses")
    page.get_by_text("highest loss first").first.wait_for()
    captions = page.locator("[data-testid='stCaptionContainer']").all_inner_texts()
    losses = [float(m[1]) for m in (LOSS_TILE.match(c.strip()) for c in captions) if m]
    assert losses and losses == sorted(losses, reverse=True), losses
    shot(page, "error_analysis_top_losses")
