"""`python -m cifar_core bench ui`: the report it prints, and a whole run at tiny scale (timings are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cifar_core.cli import main as cli
from cifar_core.cli.common import EXIT_USAGE
from cifar_core.bench import ui as ui_bench
from studio.pages import PAGES


def wait(seconds, count_shown=False, error=None):
    return {"seconds": seconds, "count_shown": count_shown, "error": error}


def test_summary_names_the_missed_targets_the_silent_long_waits_and_the_errors():
    result = ui_bench.summarise({
        "pages": {"home": {"cold": wait(20.0), "warm": wait(1.0)},
                  "predictions": {"cold": wait(9.0, count_shown=True), "warm": wait(None, error="not done after 1200 s")}},
        "detail_dialog": {"cold": wait(30.0, count_shown=True), "warm": wait(6.0)},
        "duplicates_tab": {"cold": wait(1.5, error="This app has encountered an error"), "warm": wait(0.5)},
    })
    assert sorted(result["missed_targets"]) == ["detail_dialog.warm", "home.cold", "predictions.warm"]
    assert sorted(result["long_waits_without_count"]) == ["detail_dialog.warm", "home.cold"]
    assert result["errors"] == {"predictions.warm": "not done after 1200 s",
                                "duplicates_tab.cold": "This app has encountered an error"}
    assert result["targets"]["page_warm_s"] == 3.0


def test_a_folder_without_a_model_is_refused_in_words(tmp_path, tiny_data, capsys):
    assert cli.main(["bench", "ui", "--model", str(tmp_path), "--data-dir", str(tiny_data),
                     "--quick-try"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert "model.keras" in err or "Chromium" in err


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.skipif(not ui_bench.CHROMIUM.is_file(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_bench_ui_measures_every_page_the_dialog_and_the_duplicates_tab(tiny_run, tiny_data):
    store, summary = tiny_run
    model_dir = store.get(summary["run_id"]).dir
    done = subprocess.run([sys.executable, "-m", "cifar_core", "bench", "ui", "--data-dir", str(tiny_data),
                           "--model", str(model_dir)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert set(result["pages"]) == {page.name for page in PAGES}
    measured = [*result["pages"].values(), result["detail_dialog"], result["duplicates_tab"]]
    for pair in measured:
        assert set(pair) == {"cold", "warm"}
        for w in pair.values():
            assert isinstance(w["seconds"], float) and w["seconds"] >= 0, result
            assert isinstance(w["count_shown"], bool)
    assert result["errors"] == {}, result["errors"]
    assert isinstance(result["missed_targets"], list) and isinstance(result["long_waits_without_count"], list)
    assert result["conditions"]["model"] == str(model_dir)
