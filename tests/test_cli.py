"""`python -m cifar_core`: exit codes and the JSON contract of train, evaluate, predict and runs."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.cli.main import main
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.runs.store import RunStore

pytestmark = pytest.mark.slow

TINY_TRAIN = [
    "--weights", "none", "--arch", "vgg16_bn", "--cut", "block3_pool", "--head", "gap", "--head-units", "32",
    "--dropout", "0", "--epochs-head", "1", "--epochs-finetune", "1", "--batch-size", "16", "--lr", "0.01",
    "--finetune-lr", "0.001", "--optimizer", "adam", "--no-augment", "--patience", "0", "--val-fraction", "0.2",
    "--limit", "8", "--seed", "1",
]


def cli(args: list[str], artifacts: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIFAR_ARTIFACTS": str(artifacts), "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("CIFAR10_DIR", None)
    return subprocess.run([sys.executable, "-m", "cifar_core", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_data):
    """One tiny training through the CLI: (artifacts folder, its last-line JSON)."""
    artifacts = tmp_path_factory.mktemp("cli_artifacts")
    proc = cli(["train", "--data-dir", str(tiny_data), *TINY_TRAIN], artifacts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return artifacts, last_json(proc.stdout)


def test_invalid_arguments_exit_2_naming_each_bad_value(tmp_path):
    proc = cli(["train", "--lr", "-1", "--batch-size", "0", "--epochs-head", "-2", "--epochs-finetune", "two",
                "--weights", "imagenett", "--arch", "resnet", "--data-dir", str(tmp_path / "nowhere")], tmp_path)
    assert proc.returncode == 2
    for flag, value in [("--lr", "-1"), ("--batch-size", "0"), ("--epochs-head", "-2"), ("--epochs-finetune", "two"),
                        ("--weights", "imagenett"), ("--arch", "resnet"), ("--data-dir", "nowhere")]:
        line = next((ln for ln in proc.stderr.splitlines() if ln.startswith(f"error: {flag}:")), "")
        assert value in line, (flag, proc.stderr)
    assert not (tmp_path / "runs.db").exists() or RunStore(tmp_path).list() == []  # no run was registered


def test_train_prints_a_summary_json_last(cli_run):
    artifacts, summary = cli_run
    assert {"run_id", "run_dir", "status", "val_accuracy", "test_accuracy"} <= set(summary)
    assert summary["status"] == "completed"
    assert Path(summary["run_dir"]) == artifacts / "runs" / summary["run_id"]
    assert (Path(summary["run_dir"]) / "model.keras").is_file()
    assert 0 <= summary["val_accuracy"] <= 1 and 0 <= summary["test_accuracy"] <= 1


def test_runs_lists_the_run(cli_run):
    artifacts, summary = cli_run
    proc = cli(["runs", "--json"], artifacts)
    assert proc.returncode == 0
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["run_id"], r["status"]) for r in rows] == [(summary["run_id"], "completed")]
    assert rows[0]["test_accuracy"] == pytest.approx(summary["test_accuracy"])


def test_predict_prints_one_json_per_file_and_exits_1_when_any_fails(cli_run, tmp_path):
    artifacts, summary = cli_run
    good = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    proc = cli(["predict", "--model", summary["run_id"], str(good), str(bad)], artifacts)
    assert proc.returncode == 1
    first, second = [json.loads(line) for line in proc.stdout.splitlines()]
    assert first["file"] == str(good) and len(first["top"]) == 3
    assert all(t["label"] in CLASS_NAMES and 0 <= t["prob"] <= 1 for t in first["top"])
    assert [t["prob"] for t in first["top"]] == sorted((t["prob"] for t in first["top"]), reverse=True)
    assert second["file"] == str(bad) and "not a readable image" in second["error"] and "top" not in second


# The rest call the same entry point in-process: it shares the parsed contract, not another TF start-up.


def test_predict_exits_0_when_every_file_succeeds(cli_run, tmp_path, capsys):
    artifacts, summary = cli_run
    paths = []
    for i, colour in enumerate([(0, 0, 255), (0, 255, 0)]):
        paths.append(tmp_path / f"{i}.jpg")
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    assert main(["predict", "--runs-dir", str(artifacts), "--model", summary["run_dir"], *map(str, paths)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, paths))


def test_evaluate_prints_metrics_json_last(cli_run, capsys):
    artifacts, summary = cli_run
    assert main(["evaluate", "--runs-dir", str(artifacts), "--run", summary["run_dir"]]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["accuracy"] == pytest.approx(summary["test_accuracy"])
    assert set(result["per_class"]) == set(CLASS_NAMES)
    assert {"precision", "recall", "f1", "support"} <= set(result["per_class"]["cat"])
    matrix = result["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix) and sum(map(sum, matrix)) == result["n"] == 40


def test_evaluate_needs_neither_the_base_weights_file_nor_a_valid_old_data_dir(cli_run, tmp_path, capsys):
    artifacts, summary = cli_run
    copy = tmp_path / "artifacts"
    shutil.copytree(artifacts, copy)
    config = json.loads(Path(summary["run_dir"], "config.json").read_text())
    with sqlite3.connect(copy / "runs.db") as db:  # the run started from a weights file since deleted
        db.execute("UPDATE runs SET config=? WHERE id=?", (json.dumps({**config, "weights": str(tmp_path / "gone.weights.h5")}), summary["run_id"]))
    assert main(["evaluate", "--runs-dir", str(copy), "--run", summary["run_id"], "--split", "val"]) == 0
    assert last_json(capsys.readouterr().out)["n"] == 20
    assert main(["evaluate", "--runs-dir", str(copy), "--run", summary["run_id"], "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "error: --data-dir:" in capsys.readouterr().err


def test_train_on_bad_data_exits_1_with_json(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", "--runs-dir", str(tmp_path / "art"), "--data-dir", str(tmp_path / "empty"), *TINY_TRAIN]) == 1
    out = capsys.readouterr()
    result = last_json(out.out)
    assert result["status"] == "failed" and "No CIFAR-10 data recognised" in result["error"]
    assert "Traceback" not in out.err
