

def test_tiny_run_completes_and_beats_chance(tiny_run):
    store, summary = tiny_run
    assert summary["status"] == "completed"
    run = store.get(summary["run_id"])
    assert run.status == "completed"
    assert run.model_path.is_file()
    assert summary["test_accuracy"] > 0.2  # 10 classes: chance is 0.1
