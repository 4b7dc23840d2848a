"""`python -m cifar_core inspect` and `export`: one JSON line each, exit codes, messages in words."""

from __future__ import annotations

import json

import pytest

from cifar_core.predict import calibration
from cifar_core.data import duplicates
from cifar_core.ship import export
from cifar_core.analysis import label_issues
from cifar_core.cli.main import build_parser, main
from test_cli import cli, last_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_model(tiny_run):
    store, summary = tiny_run
    return store, store.get(summary["run_id"])


def test_inspect_prints_counts_that_match_the_library(run_model, tiny_data):
    from cifar_core.data.health import check_dataset
    from cifar_core.data.loader import load_dataset
    from cifar_core.predict.evaluate import Interpretation

    store, run = run_model
    data = load_dataset(str(tiny_data))
    # A temperature other than 1 (the tiny run's few validation images keep T = 1), so that the check below can
    # tell calibrated candidates from raw ones; the shared run's own file is put back after.
    stored = (run.dir / calibration.CALIBRATION_FILE).read_bytes()
    calibration.write(run.dir, calibration.Calibration(0.8, tta=False, images=100))
    try:
        proc = cli(["inspect", "--model", str(run.model_path), "--data-dir", str(tiny_data)], store.root)
        saved = Interpretation.load(run.dir).with_temperature(calibration.temperature(run.dir, tta=False))  # as shown
    finally:
        (run.dir / calibration.CALIBRATION_FILE).write_bytes(stored)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = last_json(proc.stdout)
    assert result["test_images"] == 40 and result["train_images"] == 120
    assert saved.temperature == 0.8  # the candidates come from calibrated probabilities
    assert result["label_issues"] == len(label_issues.find_label_issues(saved.probs, saved.y, saved.class_names))
    assert "out-of-sample" in result["label_issue_probabilities"]
    expected = duplicates.find_in_arrays(data.x_train, data.x_test).counts()
    assert result["leaked_test_images"] == expected.pop("leaked_test_images") and result["duplicates"] == expected
    # The Data page's report (files) counts what inspect (arrays) counts: one finder.
    report = check_dataset(tiny_data, cache_dir=store.root / "cache")["duplicates"]
    assert {k: report[k] for k in ("exact", "near", "leaked_test_images")} == {**expected, "leaked_test_images": result["leaked_test_images"]}
    assert set(result["timings"]) == {"data_load_s", "label_issues_s", "duplicates_s"}


def test_export_prints_the_parity_numbers(run_model, tiny_data, tmp_path):
    store, run = run_model
    proc = cli(["export", "--model", run.id, "--format", "tflite", "--data-dir", str(tiny_data), "--out", str(tmp_path)], store.root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = last_json(proc.stdout)
    assert report["passed"] and report["agreement"] >= 0.995 and report["images"] == 40
    assert {"size_bytes", "keras_size_bytes", "latency_ms", "keras_latency_ms", "keras_accuracy", "export_accuracy"} <= set(report)
    assert (tmp_path / "model.tflite").stat().st_size == report["size_bytes"]
    assert json.loads((tmp_path / "tflite.json").read_text()) == report


def test_export_defaults_to_the_runs_folder(run_model, tiny_data, capsys):
    store, run = run_model
    assert main(["export", "--runs-dir", str(store.root), "--model", run.id, "--format", "savedmodel", "--data-dir", str(tiny_data),
                 "--images", "10"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["images"] == 10 and (run.dir / "exports" / "saved_model" / "saved_model.pb").is_file()


def test_an_export_that_fails_its_check_exits_1_with_the_reason(run_model, tiny_data, tmp_path, monkeypatch, capsys):
    store, run = run_model
    monkeypatch.setattr(export, "min_agreement", lambda fmt: 1.01)  # a bar no export can clear
    code = main(["export", "--model", str(run.model_path), "--format", "tflite", "--data-dir", str(tiny_data), "--out", str(tmp_path)])
    captured = capsys.readouterr()
    assert code == 1
    assert not json.loads(captured.out.strip().splitlines()[-1])["passed"]
    assert "needs at least 101.0%" in captured.err and "Do not use it" in captured.err


def test_export_formats_and_bad_values(run_model, tiny_data, capsys):
    store, run = run_model
    choices = next(a for a in build_parser()._subparsers._group_actions[0].choices["export"]._actions if a.dest == "format").choices
    assert tuple(choices) == (*export.FORMATS, "bundle")  # the bundle is made by ship/bundle.py
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", str(run.model_path), "--format", "coreml"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--model", str(run.model_path), "--format", "tflite", "--images", "0"])
    assert exit_info.value.code == 2
    assert "--images: must be a whole number from 1 to 1000000, got 0" in capsys.readouterr().err
    assert main(["export", "--model", "nowhere/model.keras", "--format", "tflite", "--data-dir", str(tiny_data)]) == 1
    assert "does not exist" in capsys.readouterr().err
