"""Predictions' verdict filter shows its fourth option ("uncertain") whole beside the sidebar at 1400 px (issue 24)."""

from __future__ import annotations

import shutil

import pytest

from test_browser import CHROMIUM, CHROMIUM_ARGS, dashboard, wait_idle

from cifar_core.predict import calibration

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


def test_the_uncertain_verdict_fits_its_column_at_1400_px(tiny_run, tiny_data, tmp_path):
    from playwright.sync_api import sync_playwright

    store, summary = tiny_run
    artifacts = tmp_path / "artifacts"
    shutil.copytree(store.root, artifacts)
    # "uncertain" is offered only for calibrated probabilities: a temperature other than 1, which the tiny run's
    # few validation images cannot earn (calibration keeps T = 1 there), so one is written for it.
    calibration.write(artifacts / "runs" / summary["run_id"], calibration.Calibration(0.8, tta=False, images=100))
    with dashboard(artifacts, tiny_data) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(90_000)
        page.goto(f"{url}/predictions?model={summary['run_id']}")
        page.get_by_text("Verdict").first.wait_for()
        wait_idle(page)
        group = page.locator("[data-testid=stButtonGroup]").first
        assert group.inner_text().split()[-4:] == ["all", "right", "wrong", "uncertain"]  # calibrated
        option = group.get_by_text("uncertain").bounding_box()
        column = group.locator("xpath=ancestor::div[@data-testid='stColumn'][1]").bounding_box()
        assert option["x"] + option["width"] <= column["x"] + column["width"], (option, column)
        browser.close()
