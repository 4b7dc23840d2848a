"""End to end in a real browser: `streamlit run app.py` on a loopback port, driven by Playwright + Debian's Chromium.

One server for the module, with a copy of the tiny completed run; screenshots go
to tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.runs import launcher
from cifar_core.runs.record import LIVE
from cifar_core.runs.store import RunStore
from cifar_core.bench.ui import studio_server

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]


@contextlib.contextmanager
def dashboard(artifacts: Path, data_dir: Path, shipped: Path | None = None):
    """`streamlit run app.py` on a free loopback port over `artifacts`, `data_dir` and the `shipped` model folder
    (none by default); yields its URL. The same server `bench ui` measures."""
    with studio_server(artifacts, str(data_dir), shipped or artifacts / "no_default_model") as url:
        yield url


@pytest.fixture(scope="module")
def server(tiny_run, tiny_data, tmp_path_factory):
    """The dashboard over a copy of the tiny run's artifacts."""
    store, summary = tiny_run
    artifacts = tmp_path_factory.mktemp("browser") / "artifacts"
    shutil.copytree(store.root, artifacts)
    with dashboard(artifacts, tiny_data) as url:
        yield url, artifacts, summary


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.set_default_timeout(90_000)  # the first visit imports TensorFlow and loads the model
    yield page
    context.close()


def shot(page, name: str) -> None:
    """Once every chart is drawn and every image loaded, a screenshot from the top of the page."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.stPlotlyChart')].every(c => c.querySelector('.main-svg'))"
        " && !document.querySelector('[data-testid=\"stSkeleton\"]')"
        " && [...document.images].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator("h1").first.scroll_into_view_if_needed()
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def wait_idle(page) -> None:
    """Until Streamlit has finished its script run (the status widget says 'Running…' meanwhile)."""
    page.wait_for_timeout(300)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=90_000)


def test_classify_upload_shows_top_prediction(server, page, tiny_data):
    url, _, _ = server
    page.goto(f"{url}/classify")
    page.get_by_text("Drag images here").first.wait_for()
    image = next((tiny_data / "test" / "ship").iterdir())
    page.locator("input[type=file][accept*='.png']").set_input_files(str(image))
    page.get_by_text("1 of 1 image(s) classified").wait_for()
    top = page.locator("[data-testid='stMain'] h3").filter(has_text=" · ").first.inner_text()
    label, prob = top.split(" · ")
    assert label.strip() in CLASS_NAMES and prob.endswith("%")
    wait_idle(page)
    shot(page, "classify")


def test_error_analysis_cell_click_opens_its_gallery(server, page):
    url, _, _ = server
    page.goto(f"{url}/error_analysis")
    page.get_by_text("Confusion matrix", exact=True).wait_for()
    plot = page.locator(".js-plotly-plot .nsewdrag").first
    plot.wait_for()
    wait_idle(page)
    box = plot.bounding_box()
    # The cell (true 'frog', predicted 'frog'): row 6, column 6 of the 10x10 grid.
    row = col = CLASS_NAMES.index("frog")
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / 10, box["y"] + (row + 0.5) * box["height"] / 10)
    heading = page.get_by_text("frog predicted as frog:")
    heading.wait_for()
    wait_idle(page)
    shot(page, "error_analysis")
    assert "image(s)" in heading.inner_text()


def _markers(page) -> int:
    """Points drawn on the live per-epoch chart (all its traces)."""
    return page.locator(".stPlotlyChart").first.locator(".scatterlayer .points path").count()


def test_train_start_live_curves_then_stop(server, page):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url, artifacts, _ = server
    page.goto(f"{url}/train")
    page.get_by_text("New training").wait_for()
    page.locator("[data-testid='stSelectbox']").filter(has_text="Start from").click()
    page.get_by_role("option", name="Quick try").click()
    # The preset's rerun refills the form; typing before it has would be overwritten.
    epochs = page.get_by_role("textbox", name="Epochs, phase 2 (fine-tune)")
    page.wait_for_function("el => el.value === '5'", arg=epochs.element_handle())  # the preset's value
    wait_idle(page)
    epochs.fill("500")  # long enough to be stopped while it runs
    epochs.press("Tab")  # commits the value (Enter would submit the form)
    wait_idle(page)
    assert epochs.input_value() == "500"
    page.get_by_role("button", name="Start training").click()
    store = RunStore(artifacts)
    for _ in range(300):
        run = store.active()
        if run is not None:
            break
        time.sleep(0.2)
    assert run is not None, "no training was started"
    assert run.config["epochs_finetune"] == 500, run.config
    try:
        page.get_by_role("heading", name=f"Training run {run.id}").wait_for()
        page.locator(".stPlotlyChart").first.wait_for(timeout=180_000)
        first = _markers(page)
        deadline = time.time() + 120
        while _markers(page) <= first and time.time() < deadline:
            page.wait_for_timeout(1000)
        assert _markers(page) > first, "the live chart did not gain points"
        shot(page, "train_live")

        # The live view re-renders every 2 s; a click that lands while the button is being
        # replaced can be dropped by the browser, as a person's would be: click again then.
        stopped = page.get_by_text(re.compile(r"Run \S+ stopped"))
        deadline = time.time() + 180
        while not stopped.is_visible() and time.time() < deadline:
            stop = page.get_by_role("button", name="Stop training")
            if stop.is_visible():
                stop.click()
            try:
                stopped.wait_for(timeout=15_000)
            except PlaywrightTimeout:
                pass
        if not stopped.is_visible():
            now = store.get(run.id)
            shot_path = SHOTS / "train_not_stopped.png"
            page.screenshot(path=str(shot_path))
            pytest.fail(f"the run did not show as stopped: status {now.status}, stop requested {now.stop_requested}; "
                        f"page: {page.locator('[data-testid=stMain]').inner_text()[:400]!r}; screenshot {shot_path}")
        wait_idle(page)
        shot(page, "train_stopped")
        run = store.get(run.id)
        assert run.status == "stopped" and run.model_path.is_file()
    finally:
        # Never leave a training behind: the launcher started it in its own session.
        launcher.stop_training(run.id, store)  # nothing to do if it has ended
        for _ in range(150):
            if store.get(run.id).status not in LIVE:
                break
            time.sleep(0.2)
        else:
            os.kill(store.get(run.id).pid, signal.SIGTERM)  # the pid the launcher recorded


def test_transfer_run_from_a_trained_models_base_on_chosen_classes(server, page):
    """The Train page starts a transfer run: a trained model's base, two of the data's classes, a new head."""
    url, artifacts, summary = server
    page.goto(f"{url}/train")
    page.get_by_text("New training").wait_for()
    page.get_by_text("Classes in the data folder: airplane, automobile").wait_for()  # the form names the classes that exist
    wait_idle(page)
    # The base must match the tiny run's network: full width, cut after block3.
    for name, value in (("Classes (empty = all)", "dog, cat"), ("Width (vgg16_bn)", "1"), ("Epochs, phase 1 (head)", "1"),
                        ("Epochs, phase 2 (fine-tune)", "1"), ("Phase 2 freezing", "block3")):
        box = page.get_by_role("textbox", name=name)
        box.fill(value)
        box.press("Tab")
    page.locator("[data-testid='stSelectbox']").filter(has_text="Cut point").click()
    page.get_by_role("option", name="block3_pool").click()
    base = page.locator("[data-testid='stSelectbox']").filter(has_text="a trained model's base (transfer learning)")
    for _ in range(3):  # a click while the list is still opening can miss its option, as a person's would: pick again
        base.click()
        page.get_by_role("option", name=re.compile(f"run {summary['run_id']}")).click()
        wait_idle(page)
        if summary["run_id"] in base.locator("input").first.input_value():
            break
    assert summary["run_id"] in base.locator("input").first.input_value()
    store = RunStore(artifacts)
    earlier = {r.id for r in store.list()}  # the page shows the latest of these until the new run starts
    page.get_by_role("button", name="Start training").click()
    deadline = time.time() + 60
    while (run := store.list()[0]).id in earlier and time.time() < deadline:
        time.sleep(0.2)
    assert run.id not in earlier, "no training was started"
    # Two validation images make "did not learn" (chance is 50% for two classes) as likely a verdict as not:
    # either way the run completed, which is what this test is about.
    page.get_by_text(re.compile(rf"Run {run.id} completed(: test accuracy| but did not learn)")).first.wait_for(timeout=300_000)
    run = store.get(run.id)
    assert run.config["weights"].endswith(f"{summary['run_id']}/model.keras") and run.config["classes"] == ["dog", "cat"]  # as typed
    assert run.summary["class_names"] == ["cat", "dog"] and run.summary["test_images"] == 2 * 4  # in the data's order
    page.goto(f"{url}/runs")
    page.get_by_text("Compare curves").wait_for()
    wait_idle(page)
    table = page.locator("[data-testid='stDataFrame']").first
    table.scroll_into_view_if_needed()
    shot(page, "runs_after_transfer")


# ---------------------------------------------------------------- Quick try on the real data


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    """The dashboard over fresh artifacts, the real CIFAR-10 and the shipped model."""
    from conftest import SHARED_DATA

    if not (SHARED_DATA / "train").is_dir():
        pytest.skip(f"real CIFAR-10 folder not found at {SHARED_DATA}")
    artifacts = tmp_path_factory.mktemp("browser_real") / "artifacts"
    artifacts.mkdir()
    try:
        with dashboard(artifacts, SHARED_DATA, shipped=ROOT / "artifacts" / "default") as url:
            yield url, artifacts
    finally:
        # A run the page started lives in its own session: one left over would slow every later test.
        for run in RunStore(artifacts).list():
            with contextlib.suppress(OSError, TypeError):
                os.killpg(run.pid, signal.SIGKILL)


def test_quick_try_learns_in_the_browser_and_never_becomes_the_default(real_server, browser, page):
    url, artifacts = real_server
    page.goto(f"{url}/train")
    page.get_by_text("New training").wait_for()
    wait_idle(page)
    page.get_by_text("A quarter-width VGG16-BN trained from scratch").wait_for()  # Quick try is the preset shown first
    page.get_by_role("button", name="Start training").click()
    # Every stage is named on the page while it happens: poll the live view's progress line.
    seen: list[str] = []
    done = page.get_by_text(re.compile(r"Run \S+ completed: test accuracy"))
    deadline = time.time() + 600
    while not done.is_visible() and time.time() < deadline:
        for bar in page.locator("[data-testid='stProgress']").all():
            with __import__("contextlib").suppress(Exception):
                text = bar.inner_text(timeout=500)
                if text and (not seen or seen[-1] != text):
                    seen.append(text)
        page.wait_for_timeout(250)
    stages = "\n".join(seen)
    assert done.is_visible(), f"the run did not complete; stages seen:\n{stages}"
    for stage in ("Loading the data", "Phase 1/1 (finetune) · epoch", "ETA", "Evaluating the best model on the test set"):
        assert stage in stages, f"stage {stage!r} was never shown; seen:\n{stages}"
    wait_idle(page)
    shot(page, "train_quick_try_done")

    run = RunStore(artifacts).list()[0]
    page.goto(f"{url}/runs")
    page.get_by_text("Compare curves").wait_for()
    wait_idle(page)
    assert run.status == "completed" and run.summary["test_accuracy"] >= 0.40, run.summary
    assert f"{run.summary['test_accuracy']:.1%}".rstrip("%") in page.locator("[data-testid='stDataFrame']").first.inner_text() \
        or run.id in page.locator("[data-testid='stMain']").inner_text()
    shot(page, "runs_after_quick_try")

    fresh = browser.new_context(viewport={"width": 1400, "height": 1200})
    try:
        other = fresh.new_page()
        other.set_default_timeout(90_000)
        other.goto(url)
        other.get_by_test_id("stMain").get_by_text("Active model").wait_for()
        wait_idle(other)
        # Home names the active model (the sidebar's pick) in its caption.
        caption = other.get_by_text("Model: ").first.inner_text()
        assert "shipped default model" in caption and run.id not in caption, caption
    finally:
        fresh.close()
