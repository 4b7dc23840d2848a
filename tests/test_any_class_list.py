"""Runs of 3 and 5 classes, end to end: everything the studio says about them uses their own classes.

A 3-class run picks classes of the (synthetic) CIFAR-10 folders with `classes=`; a 5-class run trains on
image folders whose class names are not CIFAR-10's. Both are tiny (width 0.125, a few images per class,
one epoch): what is checked is which classes each step names, not how well the models learn.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from tests.conftest import synthetic_images, tiny_config
from tests.test_classes import write_custom_folders

pytestmark = pytest.mark.slow  # they train

THREE = ("bird", "frog", "truck")  # of CIFAR-10's, in its folder order
FIVE = ("alder", "birch", "cedar", "rowan", "white oak")  # no CIFAR-10 name among them


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_data):
    """One run store holding a 3-class run, then a 5-class run (the latest): {"store", 3: run, 5: run, "data": {n: folder}}."""
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    root = tmp_path_factory.mktemp("class_lists")
    five_data = write_custom_folders(tmp_path_factory.mktemp("five_classes"), FIVE, n_train=8, n_test=3)
    store = RunStore(root)
    small = dict(width=0.125, epochs_head=1, epochs_finetune=0)
    ids = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_ARTIFACTS", str(root))
        ids[3] = train(tiny_config(tiny_data, classes=THREE, **small), store=store)["run_id"]
        ids[5] = train(tiny_config(five_data, **small), store=store)["run_id"]
    return {"store": store, **{n: store.get(i) for n, i in ids.items()}, "data": {3: tiny_data, 5: five_data}}


NAMES = {3: THREE, 5: FIVE}


@pytest.mark.parametrize("n", [3, 5])
def test_a_run_records_and_counts_its_own_classes(runs, n):
    from cifar_core.runs import outcome
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model

    run = runs[n]
    assert run.status == "completed" and tuple(run.summary["class_names"]) == NAMES[n]
    assert outcome.class_count(run) == n
    assert load_model(run.model_path).output_shape[-1] == n
    assert model_class_names(run.model_path, n) == NAMES[n]


@pytest.mark.parametrize("n", [3, 5])
def test_did_not_learn_is_judged_against_one_in_the_runs_class_count(runs, n):
    from cifar_core.runs import outcome

    run = runs[n]

    def with_val(accuracy):
        return dataclasses.replace(run, summary={**run.summary, "best_val_accuracy": accuracy, "val_accuracy": accuracy})

    at_chance = outcome.verdict(with_val(1 / n + 0.01))  # above 1/10 + 2 points: ten classes' rule would call it learned
    assert at_chance is not None and f"at chance, {1 / n:.0%} for {n} classes" in at_chance
    assert outcome.verdict(with_val(1 / n + 0.03)) is None


@pytest.mark.parametrize("n", [3, 5])
def test_confusion_matrix_and_label_issues_carry_the_runs_classes(runs, n, monkeypatch, tmp_path):
    from studio import loading
    from cifar_core.views import plots
    from cifar_core.predict.evaluate import Interpretation
    from cifar_core.runs.model_choice import model_choices

    run = runs[n]
    interp = Interpretation.load(run.dir)
    assert interp.class_names == NAMES[n]
    cm = interp.confusion_matrix()
    assert cm.shape == (n, n) and cm.sum() == len(interp.y)
    figure = plots.confusion_figure(cm, interp.class_names)
    assert list(figure.data[0].x) == list(NAMES[n]) and list(figure.data[0].y) == list(NAMES[n])
    assert plots.confusion_png(cm, interp.class_names).startswith(b"\x89PNG")

    # The Error analysis page's label-issue table (and its CSV): a confident model and a few flipped labels,
    # so that there are candidates to name.
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(runs["store"].root))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_shipped_model"))
    choice = next(c for c in model_choices(runs["store"]) if c.run_id == run.id)
    confident = (0.9 * np.eye(n)[interp.y] + 0.1 / n).astype(np.float32)
    given = interp.y.copy()
    given[:n] = (given[:n] + 1) % n
    issues = loading.label_issue_candidates(choice, Interpretation(confident, given, interp.class_names), f"flipped-{n}")
    assert len(issues) > 0
    assert set(issues["given"]) | set(issues["suggested"]) <= set(NAMES[n])
    assert not set(CLASS_NAMES) - set(NAMES[n]) & set(issues.to_csv().replace("\n", ",").split(","))


@pytest.mark.parametrize("n", [3, 5])
def test_evaluate_predict_and_export_name_the_runs_classes(runs, n, tmp_path, capsys):
    from cifar_core.cli.main import main

    run, data = runs[n], runs["data"][n]
    assert main(["evaluate", "--model", str(run.model_path), "--data-dir", str(data)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert evaluated["class_names"] == list(NAMES[n]) and set(evaluated["per_class"]) == set(NAMES[n])

    image = tmp_path / "one.png"
    Image.fromarray(synthetic_images(1, 7)[0][0]).save(image)
    overlays = tmp_path / "overlays"
    assert main(["predict", "--model", str(run.model_path), "--top", str(n), "--gradcam", str(overlays), str(image)]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(t["label"] for t in predicted["top"]) == sorted(NAMES[n])
    written = [p.name for p in overlays.iterdir()]  # the overlay's file name holds the top class, the model's own
    assert len(written) == 1 and written[0].endswith(f"_{predicted['top'][0]['label']}.png")

    assert main(["export", "--model", str(run.model_path), "--format", "tflite", "--data-dir", str(data),
                 "--out", str(tmp_path / "export"), "--images", "10"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["class_names"] == list(NAMES[n]) and f"(N, {n})" in report["output"]
    assert json.loads((tmp_path / "export" / "tflite.json").read_text())["class_names"] == list(NAMES[n])


def test_a_five_class_run_at_chance_is_never_the_default_model(runs, monkeypatch, tmp_path):
    """20% + 1 point is chance for five classes (ten classes' rule would take it for learned): even with the
    highest test accuracy recorded, the run is marked and another model is the default. The accuracies are
    written to the store, so that the rule is tested, not how a one-epoch model happens to score."""
    from streamlit.testing.v1 import AppTest

    from cifar_core.runs.model_choice import model_choices
    from cifar_core.base.paths import PROJECT_ROOT

    store, three, five = runs["store"], runs[3], runs[5]
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(store.root))
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_shipped_model"))
    monkeypatch.setenv("CIFAR10_DIR", str(runs["data"][5]))
    learned = {"best_val_accuracy": 0.9, "val_accuracy": 0.9, "test_accuracy": 0.5}
    store.update_summary(three.id, **learned)
    store.update_summary(five.id, best_val_accuracy=0.21, val_accuracy=0.21, test_accuracy=0.9)
    try:
        choices = model_choices(store)
        assert choices[0].run_id == three.id
        marked = next(c for c in choices if c.run_id == five.id)
        assert not marked.default_ok and "(did not learn)" in marked.label

        # The Train page shows the latest run (the five-class one) with its own chance level.
        at = AppTest.from_file(str(PROJECT_ROOT / "app.py"), default_timeout=120).run()
        at.switch_page("app_pages/train.py").run()
        assert not at.exception, [e.value for e in at.exception]
        errors = " ".join(e.value for e in at.error)
        assert "chance level (20% for 5 classes)" in errors and "10%" not in errors
    finally:  # the other tests read the runs as trained
        store.update_summary(three.id, **{k: three.summary.get(k) for k in learned})
        store.update_summary(five.id, **{k: five.summary.get(k) for k in learned})
