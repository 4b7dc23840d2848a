"""`python -m cifar_core bench ui`: the studio's waits as a person meets them, in a real browser.

Each page is visited first on a freshly started server over a fresh artifacts
folder (a copy of the model folder and the already decoded data), then again in a
new browser session, when Streamlit's caches are warm. On the Predictions page
the image-detail dialog is opened for two images (the first open, then a warm
one); on Error analysis the "Duplicates and leaks" tab is opened, then opened
again in a new session. With `quick_try`, the Train page's first preset is
started on a fresh artifacts folder without decoded data (a new user's first
training) and timed until the page says it completed.

A wait ends when the server has finished the script run the action started
(read from Streamlit's websocket messages: the Train page's panel reruns as a
fragment every 2 s, so "no script running" never holds for long there), the
awaited element (or an error) is drawn, and nothing is still loading (spinner,
progress bar, image, chart) for SETTLE_S in a row; its time is measured up to the
start of that spell. The page is sampled every POLL_S meanwhile: `count_shown` says
whether a progress text with a count ("1,000/10,000") appeared, `error` holds
the text of an error box (Streamlit's exception, or its "This app has
encountered an error" page).

Playwright drives Chromium (/usr/bin/chromium by default); `streamlit run app.py`
serves on a free loopback port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from cifar_core.data.loader import data_cache_folder, describe_source, load_dataset
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore

Echo = Callable[[str], None]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
TARGETS = {"page_cold_s": 15.0, "page_warm_s": 3.0, "detail_dialog_warm_s": 5.0, "count_after_s": 2.0}
POLL_S = 0.1
SETTLE_S = 0.3
# One wait's limit: on a shared 2-core machine a first pass over 60,000 images takes minutes.
WAIT_LIMIT_S = 1200.0
QUICK_TRY_LIMIT_S = 3600.0
SERVER_START_S = 120.0
CLICK_LIMIT_MS = 60_000  # what is clicked is on an idle page already: a missing button is an error, not a wait

# What is drawn once the awaited thing is there.
PAGE_READY = "h1"
DIALOG_READY = '[role="dialog"] .stPlotlyChart .main-svg'
TAB_READY = ('[role="tabpanel"] [data-testid="stSlider"], [role="tabpanel"] [data-testid="stCaptionContainer"], '
             '[role="tabpanel"] [data-testid="stAlert"]')
STATE_JS = """ready => {
  const all = s => [...document.querySelectorAll(s)];
  const shown = e => e.getClientRects().length > 0;
  const busy = all('[data-testid="stSpinner"], [data-testid="stProgress"], [data-testid="stSkeleton"]').filter(shown);
  const errors = all('[data-testid="stException"]').filter(shown).map(e => e.innerText.slice(0, 300));
  if (document.body.innerText.includes('This app has encountered an error')) errors.push('This app has encountered an error');
  const loading = all('img').some(i => shown(i) && !i.complete)
    || all('.stPlotlyChart').some(c => shown(c) && !c.querySelector('.main-svg'));
  return {busy: busy.length > 0 || loading, text: busy.map(e => e.innerText).join(' | '),
          ready: all(ready).some(shown), errors};
}"""
PAGE_RUN_ENDS = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_WITH_COMPILE_ERROR)
COUNT = re.compile(r"\d[\d,]*\s*/\s*\d[\d,]*")


def run_ui_bench(data_dir: str | None, model_dir: Path, *, echo: Echo | None = None, quick_try: bool = False,
                 chromium: Path = CHROMIUM) -> dict:
    """Measure the waits described in the module docstring; returns the JSON-ready result."""
    say = echo or (lambda _: None)
    data_cache = _prepared(data_dir, model_dir, chromium, say)

    # The dashboard's list of its pages (studio/pages.py: plain data), read when a benchmark runs, so that
    # importing cifar_core never imports the dashboard.
    from studio.pages import PAGES

    result: dict = {"pages": {}, "conditions": _conditions(data_dir, model_dir)}
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            for name, path in ((page.name, page.url_path) for page in PAGES):
                artifacts = _fresh_artifacts(Path(tmp), model_dir, data_cache)
                with studio_server(artifacts, str(data_dir), artifacts / "default") as url:
                    waits = result["pages"][name] = {}
                    with _session(browser) as visit:
                        waits["cold"] = visit.timed(lambda: visit.page.goto(f"{url}/{path}"), PAGE_READY)
                    say(f"{name}: cold {_seconds(waits['cold'])}")
                    with _session(browser) as visit:
                        waits["warm"] = visit.timed(lambda: visit.page.goto(f"{url}/{path}"), PAGE_READY)
                        say(f"{name}: warm {_seconds(waits['warm'])}")
                        if name == "predictions":
                            result["detail_dialog"] = _detail_dialog(visit, say)
                    if name == "error_analysis":
                        result["duplicates_tab"] = _duplicates_tab(browser, url, say)
            if quick_try:
                result["quick_try"] = _quick_try(browser, Path(tmp), data_dir, model_dir, say)
        finally:
            browser.close()
    return summarise(result)


def summarise(result: dict) -> dict:
    """Add the targets, the waits that missed them and the long waits that showed no count."""
    waits = {f"{page}.{kind}": w for page, pair in result["pages"].items() for kind, w in pair.items()}
    waits.update({f"{part}.{kind}": w for part in ("detail_dialog", "duplicates_tab", "quick_try")
                  for kind, w in result.get(part, {}).items() if isinstance(w, dict)})
    limits = {name: TARGETS["page_cold_s"] if name.endswith(".cold") else TARGETS["page_warm_s"]
              for name in waits if name.split(".")[0] in result["pages"]}
    limits["detail_dialog.warm"] = TARGETS["detail_dialog_warm_s"]
    result["targets"] = TARGETS
    result["missed_targets"] = [name for name, limit in limits.items()
                                if name in waits and (waits[name]["seconds"] is None or waits[name]["seconds"] > limit)]
    result["long_waits_without_count"] = [name for name, w in waits.items() if w["seconds"] is not None
                                          and w["seconds"] > TARGETS["count_after_s"] and not w["count_shown"]]
    result["errors"] = {name: w["error"] for name, w in waits.items() if w["error"]}
    return result


# ---------------------------------------------------------------- the measured interactions


def _detail_dialog(visit: "Visit", say: Echo) -> dict:
    """Open the detail of the first image of the Predictions grid, close it, then open the second one's."""
    buttons = visit.page.get_by_role("button", name=re.compile(r"^#\d+$"))
    waits = {}
    for kind, nth in (("cold", 0), ("warm", 1)):
        waits[kind] = visit.timed(lambda: buttons.nth(nth).click(timeout=CLICK_LIMIT_MS), DIALOG_READY)
        say(f"image detail: {kind} {_seconds(waits[kind])}")
        # The dialog's own Close button (after the header's ×) reruns the page without it.
        close = visit.page.get_by_role("dialog").get_by_role("button", name="Close", exact=True).last
        visit.timed(lambda: close.click(timeout=CLICK_LIMIT_MS), PAGE_READY, limit_s=CLICK_LIMIT_MS / 1000)
    return waits


def _duplicates_tab(browser, url: str, say: Echo) -> dict:
    """Open Error analysis's duplicates tab: once (the first pass), then again in a new session."""
    waits = {}
    for kind in ("cold", "warm"):
        with _session(browser) as visit:
            visit.timed(lambda: visit.page.goto(f"{url}/error_analysis"), PAGE_READY)
            tab = visit.page.get_by_role("tab", name="Duplicates and leaks")
            waits[kind] = visit.timed(lambda: tab.click(timeout=CLICK_LIMIT_MS), TAB_READY)
        say(f"duplicates tab: {kind} {_seconds(waits[kind])}")
    return waits


def _quick_try(browser, tmp: Path, data_dir: str, model_dir: Path, say: Echo) -> dict:
    """Start the Train page's first preset on fresh artifacts without decoded data; time it to 'completed'."""
    artifacts = _fresh_artifacts(tmp, model_dir, None)
    with studio_server(artifacts, data_dir, artifacts / "default") as url, _session(browser) as visit:
        visit.timed(lambda: visit.page.goto(f"{url}/train"), PAGE_READY)
        done = re.compile(r"Run \S+ (completed|failed|stopped)")
        start = time.perf_counter()
        visit.page.get_by_role("button", name="Start training").click()
        visit.page.get_by_text(done).first.wait_for(timeout=QUICK_TRY_LIMIT_S * 1000)
        seconds = time.perf_counter() - start
        run = RunStore(artifacts).list()[0]
    process_s = run.finished - run.started if run.started and run.finished else None
    say(f"quick try: {seconds:.1f} s in the browser ({run.status})")
    return {"seconds_in_browser": round(seconds, 1), "run_process_seconds": round(process_s, 1) if process_s else None,
            "status": run.status, "test_accuracy": run.summary.get("test_accuracy"),
            "command": "the Train page's first preset, 'Start training' clicked, until the page says the run ended"}


class Visit:
    """A page in its own browser context (a new Streamlit session), counting the server's finished script runs."""

    def __init__(self, page):
        self.page = page
        self.finished_runs = 0
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload: bytes | str) -> None:
        if isinstance(payload, str):
            return
        msg = ForwardMsg.FromString(payload)
        # A fragment's rerun (the Train page's panel, every 2 s) is no run of the page, nor a run cut short by a rerun.
        if msg.WhichOneof("type") == "script_finished" and msg.script_finished in PAGE_RUN_ENDS:
            self.finished_runs += 1

    def timed(self, action: Callable[[], None], ready: str, limit_s: float = WAIT_LIMIT_S) -> dict:
        """Do `action`, then wait until the script run it started has finished, `ready` (or an error) is drawn
        and nothing is loading; seconds, whether a count was shown, the error seen."""
        start, runs_before = time.perf_counter(), self.finished_runs
        try:
            action()
        except PlaywrightError as err:  # e.g. no image button to click on a page that failed
            return {"seconds": None, "count_shown": False, "error": str(err).splitlines()[0][:300]}
        count_shown, error, settled_since = False, None, None
        while (now := time.perf_counter()) - start < limit_s:
            state = self.page.evaluate(STATE_JS, ready)
            count_shown = count_shown or bool(COUNT.search(state["text"]))
            error = error or (state["errors"][0] if state["errors"] else None)
            # An error box ends the wait too: what was awaited will not come.
            if self.finished_runs == runs_before or state["busy"] or not (state["ready"] or error):
                settled_since = None
            elif settled_since is None:
                settled_since = now
            elif now - settled_since >= SETTLE_S:
                return {"seconds": round(settled_since - start, 2), "count_shown": count_shown, "error": error}
            self.page.wait_for_timeout(POLL_S * 1000)  # lets Playwright deliver the websocket events meanwhile
        return {"seconds": None, "count_shown": count_shown, "error": error or f"not done after {limit_s:.0f} s"}


def _seconds(wait: dict) -> str:
    text = "timed out" if wait["seconds"] is None else f"{wait['seconds']:.1f} s"
    return text + (f" (error: {wait['error']})" if wait["error"] else "")


# ---------------------------------------------------------------- server, browser, folders


def _prepared(data_dir: str | None, model_dir: Path, chromium: Path, say: Echo) -> Path:
    """Check the inputs (in words) and decode the data once; returns the decode cache entry to share."""
    if not chromium.is_file():
        raise RunError(f"bench ui needs Chromium at {chromium} (Debian: apt-get install chromium).")
    if not (Path(model_dir) / "model.keras").is_file():
        raise RunError(f"{model_dir} holds no model.keras: pass --model a model folder (e.g. artifacts/default).")
    status = describe_source(data_dir)
    if not data_dir or not status["ok"]:
        raise RunError("bench ui needs CIFAR-10 image data: pass --data-dir DIR or set CIFAR10_DIR.")
    cache = data_cache_folder(data_dir)
    if not (cache / "meta.json").is_file():
        say(f"decoding {data_dir} once (the measured visits start with the data cached)")
        load_dataset(data_dir)
    return cache


def _conditions(data_dir: str | None, model_dir: Path) -> dict:
    return {"data_dir": str(data_dir), "model": str(model_dir), "cpus": os.cpu_count(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "cold": "first visit of the page on a freshly started server over a fresh artifacts folder, data decoded",
            "warm": "the same page again in a new browser session"}


def _fresh_artifacts(tmp: Path, model_dir: Path, data_cache: Path | None) -> Path:
    """A new artifacts folder: a copy of the model folder as the shipped model, and the shared decode cache."""
    artifacts = Path(tempfile.mkdtemp(dir=tmp, prefix="artifacts-"))
    shutil.copytree(model_dir, artifacts / "default", ignore=shutil.ignore_patterns("embeddings"))
    if data_cache is not None:
        (artifacts / "cache").mkdir()
        (artifacts / "cache" / data_cache.name).symlink_to(data_cache.resolve(), target_is_directory=True)
    return artifacts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def studio_server(artifacts: Path, data_dir: str, shipped: Path) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port over `artifacts`, `data_dir` and the `shipped` model folder;
    yields its URL. Its log is `artifacts/streamlit.log`."""
    port = free_port()
    env = {**os.environ, "CIFAR_ARTIFACTS": str(artifacts), "CIFAR10_DIR": str(data_dir),
           "CIFAR_DEFAULT_MODEL_DIR": str(shipped)}
    with open(artifacts / "streamlit.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + SERVER_START_S
            while not _healthy(url):
                if proc.poll() is not None or time.time() > deadline:
                    tail = (artifacts / "streamlit.log").read_text(errors="replace")[-2000:]
                    raise RunError(f"streamlit did not start; its log ends:\n{tail}")
                time.sleep(0.5)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def _session(browser) -> Iterator[Visit]:
    """A page in a new browser context: a new Streamlit session, nothing shared with earlier visits but the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_LIMIT_S * 1000)
        yield Visit(page)
    finally:
        context.close()
