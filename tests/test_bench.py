"""The benchmark's machinery on tiny synthetic data: every key, sane types. No timing assertions:
speed targets live in the benchmark's own output, not in the test suite."""

import json

import pytest

from cifar_core.bench.speed import TARGETS, format_table, run_bench
from cifar_core.bench.speed_settings import BenchSizes

TINY = BenchSizes(
    synthetic_train=300, synthetic_test=80, head_images=64, head_batch=16, finetune_batch=8, pretrain_images=32, pretrain_epochs=1,
    finetune_steps=3, val_images=24, latency_calls=3, eval_images=40, rss_steps=2,
)


@pytest.mark.slow
def test_bench_runs_on_tiny_synthetic_data():
    lines = []
    result = run_bench(None, quick=True, echo=lines.append, sizes=TINY)

    json.dumps(result)  # the CLI prints it as one JSON line
    assert result["data"].startswith("synthetic")
    assert "random init" in result["weights"]
    for key in TARGETS:
        value = result[key]
        assert isinstance(value, (int, float)) and value >= 0, (key, value)
    for key in ("head_epoch_speedup", "finetune_throughput_ratio", "predict_latency_ms_p50", "eval_10k_seconds", "peak_rss_mb"):
        assert result[key] > 0, key
    assert result["predict_latency_ms_p90"] >= result["predict_latency_ms_p50"]
    assert 0 <= result["finetune_val_accuracy_project"] <= 1
    assert 0 <= result["finetune_val_accuracy_baseline"] <= 1
    assert 0 <= result["finetune_val_accuracy_checkpoint"] <= 1
    assert set(result["targets_met"]) == set(TARGETS)
    assert all(v in (True, False) for v in result["targets_met"].values())
    assert result["eval_images_measured"] == TINY.eval_images
    assert any("head_epoch_speedup" in line for line in lines)  # the readable table was echoed


def test_format_table_tolerates_missing_figures():
    table = format_table({"data": "synthetic", "cpus": 2, "load_average_at_start": 0.0, "quick": True})
    assert "head_epoch_speedup" in table and "-" in table


@pytest.mark.slow
def test_ablation_quick_trains_every_variant_and_reports_both_accuracies(tiny_data, capsys):
    """`bench ablation --quick` on the tiny dataset: every variant trains and is reported (no accuracy claims here)."""
    from cifar_core.cli.main import main
    from cifar_core.training.recipe import ABLATION

    assert main(["bench", "ablation", "--quick", "--data-dir", str(tiny_data)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["variant"] for r in rows] == list(ABLATION)
    for row in rows:
        assert 0 <= row["test_accuracy_tta"] <= 1 and 0 <= row["test_accuracy"] <= 1 and row["seconds"] > 0


@pytest.mark.slow
def test_bench_ood_quick_reports_every_set_and_score(tiny_run, tiny_data, capsys):
    """`bench ood --quick` on the tiny dataset and run: every out-of-distribution set and score gets its row, the
    5-class model is trained here, and the table is printed (no quality claims on tiny data)."""
    from cifar_core.cli.main import main
    from cifar_core.predict import ood

    store, summary = tiny_run
    assert main(["bench", "ood", "--quick", "--data-dir", str(tiny_data), "--model", summary["run_dir"]]) == 0
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.startswith("{")]
    sets = ("digits", "noise", "flat colours", "blurred noise", "held-out classes")
    assert {(r["ood_set"], r["method"]) for r in rows} == {(s, m) for s in sets for m in ood.METHODS}
    for row in rows:
        assert 0 <= row["auroc"] <= 1 and 0 <= row["false_alarms_at_95_recall"] <= 1 and row["in_images"] > 0
    assert "| out-of-distribution set |" in captured.err and "held-out classes" in captured.err
