"""Class names are data, not markup, in a real browser.

The shipped model is given ten hostile class names (a Markdown image and a Markdown link to a local HTTP
server, raw HTML, a "/", Arabic and Hebrew, 200 characters, bold, a colour directive, LaTeX) and a tiny
dataset labelled with them (Kaggle layout: its labels file can hold a "/", which no folder name can).
Every page that shows class names must show them as typed, and the local server must see no request:
a name rendered as Markdown or HTML would make the browser fetch it.

Screenshots go to tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import html
import http.server
import threading

import pytest

from cifar_core.views.plots import tick
from tests.test_class_names_text import hostile_model
from test_browser import CHROMIUM, SHOTS, browser, dashboard, page, wait_idle  # noqa: F401 (fixtures)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium"),
]
LONG = ("a very long class name " * 10)[:200]


def hostile_names(port: int) -> list[str]:
    beacon = f"http://127.0.0.1:{port}"
    return [f"![b]({beacon}/beacon.png)", f"<img src={beacon}/x.png>", f"[link]({beacon}/link)", "cats/dogs",
            "قطة سوداء", "חתול", LONG, "**bold**", ":red[x]", "$x$"]


@pytest.fixture(scope="module")
def beacon():
    """A local HTTP server that records every request made to it: (port, requests)."""
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            requests.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], requests
    server.shutdown()


@pytest.fixture(scope="module")
def hostile_server(beacon, tmp_path_factory):
    """The dashboard over the shipped model renamed to the hostile classes, and a tiny dataset labelled with them."""
    port, _ = beacon
    names = hostile_names(port)
    artifacts, shipped, data = hostile_model(tmp_path_factory.mktemp("hostile"), names)
    with dashboard(artifacts, data, shipped=shipped) as url:
        yield url, names, data


def as_tick(name: str) -> str:
    """A class name as a chart's axis shows it: cut to plots.TICK_CHARS (the escaping undone by the browser)."""
    return html.unescape(tick(name))


def shown_text(page) -> str:
    """The main area's text as shown, with the charts' text (SVG: not in innerText), without the invisible marks
    that isolate right-to-left names from what is written beside them (studio.text.plain)."""
    main = page.locator("[data-testid='stMain']")
    charts = page.locator(".stPlotlyChart")
    text = main.inner_text() + "\n" + "\n".join(charts.nth(i).text_content() for i in range(charts.count()))
    return text.replace("\u2068", "").replace("\u2069", "")


def check_literal(page, port: int, requests: list[str], names: list[str], where: str) -> None:
    """Each of `names` shown as typed, nothing on the page pointing at the beacon, and no request made to it."""
    wait_idle(page)
    page.wait_for_function("!document.querySelector('[data-testid=\"stSkeleton\"]')")  # widgets still being drawn
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"class_names_{where}.png"), full_page=True)
    text = shown_text(page)
    missing = [n for n in names if n not in text]
    assert not missing, f"{where}: not shown as typed: {missing}"
    fetching = page.locator(f"[src*='{port}'], [srcset*='{port}'], [style*='{port}']")
    assert fetching.count() == 0, f"{where}: {[fetching.nth(i).evaluate('e => e.outerHTML') for i in range(fetching.count())]}"
    # A bare URL in a name is shown as itself; Streamlit's Markdown (GitHub's) makes it a link to what it says, and only
    # to that: a link whose text hides another address would be markup, as would any other element.
    links = page.locator(f"a[href^='http'][href*='{port}']")  # not a heading's own anchor (#...)
    for i in range(links.count()):
        assert links.nth(i).inner_text() == links.nth(i).get_attribute("href"), f"{where}: a hidden link"
    assert not page.locator("[data-testid='stException'], [data-testid='stAlertContentError']").count(), where
    assert requests == [], f"{where}: the browser fetched {requests}"


def test_hostile_class_names_are_shown_as_typed_and_fetch_nothing(hostile_server, beacon, page):
    url, names, data = hostile_server
    port, requests = beacon
    page.set_default_timeout(300_000)  # the first visit imports TensorFlow and loads the model

    page.goto(url)
    page.locator("[data-testid='stMain']").get_by_text("Active model").wait_for()
    check_literal(page, port, requests, names, "home")  # the caption lists every class

    page.goto(f"{url}/classify")
    page.get_by_text("Drag images here").first.wait_for()
    page.locator("input[type=file][accept*='.png']").set_input_files(str(data / "train" / "1.png"))
    page.get_by_text("1 of 1 image(s) classified").wait_for()
    top = page.locator("[data-testid='stMain'] h3").filter(has_text=" · ").first.inner_text().strip("\u2068\u2069")
    assert top.rsplit(" · ", 1)[0] in names  # the top class as typed
    wait_idle(page)
    bars = page.locator(".stPlotlyChart g.ytick text")
    bars.first.wait_for()
    assert len({bars.nth(i).text_content() for i in range(bars.count())} & {as_tick(n) for n in names}) == 3  # the top 3
    check_literal(page, port, requests, [top.rsplit(" · ", 1)[0]], "classify")

    page.goto(f"{url}/predictions")
    page.get_by_text("test images · accuracy").wait_for()
    check_literal(page, port, requests, names, "predictions")  # every tile says its true class

    page.goto(f"{url}/error_analysis")
    page.get_by_text("Confusion matrix", exact=True).wait_for()
    page.locator(".stPlotlyChart g.xtick text").first.wait_for()
    # The cell's heading, not the pairs table's header (a hidden <th> that comes first in the page).
    page.locator("[data-testid='stMain'] h3").filter(has_text="predicted as").first.wait_for()
    wait_idle(page)
    ticks = page.locator(".stPlotlyChart g.xtick text, .stPlotlyChart g.ytick text")
    assert sorted(ticks.nth(i).text_content() for i in range(ticks.count())) == sorted(as_tick(n) for n in names * 2)
    heading = page.locator("[data-testid='stMain'] h3").filter(has_text="predicted as").first.inner_text()
    heading = heading.replace("\u2068", "").replace("\u2069", "")
    cell = heading.rsplit(":", 1)[0].split(" predicted as ")
    assert [c for c in cell if c in names] == cell  # the picked cell's classes, as typed
    check_literal(page, port, requests, cell, "error_analysis")
    page.locator("[data-testid='stSelectbox']").filter(has_text="True class").click()
    options = page.get_by_role("option")
    options.first.wait_for()
    assert sorted(o.strip("\u2068\u2069") for o in options.all_inner_texts()) == sorted(names)  # the picker's options
    page.keyboard.press("Escape")
    check_literal(page, port, requests, cell, "error_analysis_picker")

    page.goto(f"{url}/runs")
    page.get_by_text("Compare curves").wait_for()
    check_literal(page, port, requests, [], "runs")
