"""A newcomer's walkthrough (issue 19): the runs table, comparable curves, one percentage format, batch
curves across epochs, labels that fit, class names in any case, help texts that hold, a bad ?model= link."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cifar_core.runs import comparable
from cifar_core.data import loader as data
from cifar_core.views import plots
from cifar_core.model import start_weights
from cifar_core.views import train_form
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.runs.record import RunError
from cifar_core.runs.store import RunStore
from tests.conftest import tiny_config
from tests.test_pages import open_page, shown, unescape, with_data, with_run  # noqa: F401 (fixtures)

IMAGENET_ERROR = ("Could not get the ImageNet weights for VGG16 (Exception: URL fetch failure).\n"
                  "Keras downloads vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 into ~/.keras/models on first use")
FIVE = ("cat", "deer", "dog", "frog", "horse")


@pytest.fixture(autouse=True)
def no_shipped_model(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(tmp_path / "no_default_model"))


@pytest.fixture
def empty_keras_home(tmp_path, monkeypatch):
    """A Keras cache without the ImageNet file (where `keras_models_dir` looks)."""
    home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home / "models"


def finished(store: RunStore, config: TrainConfig, status: str, *, model=None, summary=None, error=None,
             val_curve=()):
    """A run row with its folder (and `model` copied in), `val_curve` as its epoch records, ended as `status`."""
    run = store.create(config, exclusive=False)
    if model is not None:
        shutil.copy(model, run.model_path)
    for epoch, acc in enumerate(val_curve, start=1):
        store.log_metrics(run.id, "epoch", "finetune", epoch, epoch, {"val_accuracy": acc, "accuracy": acc, "loss": 1.0})
    store.finish(run.id, status, summary=summary or {}, error=error)
    return store.get(run.id)


@pytest.fixture
def walkthrough_store(tiny_run, tiny_data, tmp_path, monkeypatch):
    """Oldest first: a 10-class run, a 5-class run, another 10-class run, and a Seed-notebook run that failed
    for lack of the ImageNet weights (with a multi-line error)."""
    tiny_store, summary = tiny_run
    model = tiny_store.get(summary["run_id"]).model_path
    store = RunStore(tmp_path / "walkthrough")
    done = {"test_accuracy": 0.89, "best_val_accuracy": 0.654, "val_accuracy": 0.654, "epochs_completed": 2}
    old_ten = finished(store, tiny_config(tiny_data), "completed", model=model, summary=done, val_curve=(0.5, 0.654))
    five = finished(store, tiny_config(tiny_data, classes=FIVE), "completed", model=model, summary=done, val_curve=(0.6, 0.7))
    new_ten = finished(store, tiny_config(tiny_data), "completed", model=model, summary=done, val_curve=(0.4, 0.6476))
    seed = finished(store, TrainConfig(data_dir=str(tiny_data)).validate(), "failed", error=IMAGENET_ERROR)
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(store.root))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    return {"old_ten": old_ten.id, "five": five.id, "new_ten": new_ten.id, "seed": seed.id}


# ---------------------------------------------------------------- 1. the runs table


@pytest.mark.slow
def test_runs_table_formats_percentages_once_shows_missing_values_as_a_dash_and_wraps_problems(walkthrough_store,
                                                                                                  empty_keras_home):
    at = open_page("runs")
    table = at.dataframe[0]
    columns = json.loads(table.proto.columns)
    for name in ("val acc", "test acc"):
        assert columns[name]["type_config"] == {"type": "number", "format": "percent", "step": 0.001, "min_value": 0,
                                                "max_value": 1}, columns[name]
    assert table.proto.placeholder == "—"
    assert table.proto.row_height > 64  # Streamlit wraps text only in rows taller than 4rem
    assert columns["problem"]["width"] and columns["settings"]["width"]
    rows = table.value
    failed = rows.loc[walkthrough_store["seed"]]
    assert pd.isna(failed["val acc"]) and pd.isna(failed["test acc"])
    assert "Could not get the ImageNet weights" in failed["problem"] and "\n" not in failed["problem"]
    assert "ImageNet weights" in failed["settings"] and "rmsprop" in failed["settings"]


# ---------------------------------------------------------------- 2. comparable curves


def test_runs_on_the_same_folder_and_classes_are_comparable_whatever_the_spelling(tiny_data):
    ten = comparable.data_key({"data_dir": str(tiny_data)})
    assert comparable.data_key({"data_dir": str(tiny_data) + "/"}) == ten
    five = comparable.data_key({"data_dir": str(tiny_data), "classes": ["Dog", "cat", "frog", "horse", "deer"]})
    assert five == comparable.data_key({"data_dir": str(tiny_data), "classes": list(FIVE)})
    keys = {"a": ten, "b": five, "c": ten}
    assert comparable.same_data(keys, "a") == ["a", "c"]
    assert comparable.not_comparable(keys, ["a", "c"]) is None
    sentence = comparable.not_comparable(keys, ["a", "b", "c"])
    assert sentence.startswith("Not comparable: a learned every class") and "b learned 5 classes (cat, deer, dog, frog, horse)" in sentence
    assert "c learned" not in sentence


@pytest.mark.slow
def test_compare_curves_defaults_to_runs_on_the_same_data_and_says_when_others_are_not(walkthrough_store,
                                                                                        empty_keras_home):
    at = open_page("runs")
    overlay = at.multiselect[0]
    # The newest run without curves (the failed one) is skipped; the 5-class run is left out.
    assert overlay.value == [walkthrough_store["new_ten"], walkthrough_store["old_ten"]]
    assert not any("Not comparable" in w.value for w in at.warning)
    overlay.select(walkthrough_store["five"]).run()
    warnings = [unescape(w.value) for w in at.warning]
    assert any(w.startswith(f"Not comparable: {walkthrough_store['new_ten']} learned every class")
               and f"{walkthrough_store['five']} learned 5 classes" in w for w in warnings), warnings


# ---------------------------------------------------------------- 3. one percentage format


@pytest.mark.slow
def test_per_class_precision_and_recall_share_one_percentage_format(with_run):
    at = open_page("error_analysis")
    scores = next(df for df in at.dataframe if "precision" in df.value.columns)
    columns = json.loads(scores.proto.columns)
    assert columns["precision"]["type_config"] == columns["recall"]["type_config"]
    assert columns["precision"]["type_config"]["format"] == "percent" and columns["precision"]["type_config"]["step"] == 0.001


# ---------------------------------------------------------------- 4. batch curves


def test_batch_curves_average_between_records_and_do_not_restart_at_epoch_boundaries():
    """Records as Keras logs them (the running average since the epoch began), every few batches."""
    steps = 12
    per_batch = np.linspace(2.0, 1.0, 3 * steps)  # a steadily falling loss over 3 epochs
    records = []
    for epoch in range(3):
        values = per_batch[epoch * steps:(epoch + 1) * steps]
        running = np.cumsum(values) / np.arange(1, steps + 1)
        for batch in (3, 5, 9, 12):  # throttled: not every batch is recorded
            records.append({"phase": "finetune", "epoch": epoch + 1, "step": epoch * steps + batch, "batch": batch,
                            "loss": running[batch - 1]})
    batches = pd.DataFrame(records)
    means = plots.batch_means(batches, "loss").to_numpy()
    bounds = [0, 3, 5, 9, 12]
    expected = [per_batch[e * steps + a:e * steps + b].mean() for e in range(3) for a, b in zip(bounds, bounds[1:])]
    np.testing.assert_allclose(means, expected)
    # The means fall evenly; the logged running averages lag within an epoch, then drop at each new one.
    steps_down = -np.diff(means)
    assert np.all(steps_down > 0) and steps_down.max() < 2 * steps_down.min()
    logged = -np.diff(batches["loss"].to_numpy())
    at_boundary = batches["epoch"].diff().to_numpy()[1:] > 0
    assert logged[at_boundary].min() > 3 * logged[~at_boundary].max()
    fig = plots.batch_figure(batches)
    assert [t.name for t in fig.data] == ["since the previous point", "moving average"]  # no accuracy logged here
    assert "since the previous point" in fig.layout.title.text


# ---------------------------------------------------------------- 5. labels that fit


@pytest.mark.slow
def test_the_sidebar_picker_shows_the_accuracy_first_and_home_metrics_are_short(with_run, with_data):
    store, summary = with_run
    at = open_page("home")
    # The dataset it learned comes before its name: a narrow picker cuts the end (issue 24).
    assert at.selectbox(key="model_pick").options[0] == f"{summary['test_accuracy']:.1%} · {with_data.name} · run {summary['run_id']}"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Architecture · 32 px input"] == "vgg16_bn"
    assert metrics["Starting weights"] == "from scratch"


# ---------------------------------------------------------------- 6. class names in any case


def test_class_names_match_whatever_their_case_when_only_one_class_fits(tiny_data, tmp_path):
    assert data.match_classes(str(tiny_data), ("Cat", "DOG")) == ("cat", "dog")
    assert data.missing_classes(str(tiny_data), ("Cat", "DOG")) is None
    message = data.missing_classes(str(tiny_data), ("Cat", "unicorn"))
    assert message == ("no class 'unicorn' in this data folder; its classes are: airplane, automobile, bird, cat, deer, "
                       "dog, frog, horse, ship, truck")
    # Two classes differing only in case: "CAT" fits both, so it is refused with both named.
    for name in ("cat", "Cat", "dog"):
        folder = tmp_path / "cased" / "train" / name
        folder.mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(folder / "0.png")
    cased = str(tmp_path / "cased")
    assert data.match_classes(cased, ("Cat", "DOG")) == ("Cat", "dog")
    message = data.missing_classes(cased, ("CAT", "dog"))
    assert "no class 'CAT' in this data folder ('CAT' could be 'Cat' or 'cat'" in message
    assert message.endswith("its classes are: Cat, cat, dog")


def test_the_form_and_the_cli_store_the_data_folders_spelling(tiny_data, tmp_path, monkeypatch, capsys):
    assert train_form.check_data(tiny_config(tiny_data, classes=("Cat", "Dog"))).classes == ("cat", "dog")
    with pytest.raises(ConfigError) as info:
        train_form.check_data(tiny_config(tiny_data, classes=("cat", "Cat")))  # one class, named twice
    assert "two or more different class names" in info.value.errors["classes"]

    from cifar_core.cli.main import main

    monkeypatch.setenv("CIFAR_ARTIFACTS", str(tmp_path / "art"))
    code = main(["train", "--data-dir", str(tiny_data), "--weights", "none", "--arch", "vgg16_bn", "--classes", "cat,Cat"])
    assert code == 2 and "--classes: must be empty or two or more different class names" in capsys.readouterr().err
    assert RunStore(tmp_path / "art").list() == []


@pytest.mark.slow
def test_the_train_form_accepts_class_names_in_another_case(tiny_data, tmp_path, monkeypatch):
    from cifar_core.runs import launcher

    monkeypatch.setenv("CIFAR_ARTIFACTS", str(tmp_path / "art"))
    monkeypatch.setenv("CIFAR10_DIR", str(tiny_data))
    started = []

    def start(config, store):  # what the form would start, without a training process
        started.append(config)
        raise RunError("not started in this test")

    monkeypatch.setattr(launcher, "start_training", start)
    at = open_page("train")
    at.text_input(key="cfg_classes").input("Cat, Dog")
    at.button(key="FormSubmitter:train_form-Start training").click().run()
    assert [c.classes for c in started] == [("cat", "dog")], [e.value for e in at.error]


# ---------------------------------------------------------------- 7. promises in help texts


def test_resume_is_refused_while_the_starting_weights_are_missing(tmp_path, empty_keras_home):
    seed = dataclasses.asdict(TrainConfig())  # the Seed notebook's settings: VGG16 on ImageNet weights
    problem = start_weights.missing_start_weights(seed)
    assert start_weights.IMAGENET_NOTOP_FILE in problem and str(empty_keras_home) in problem
    assert "copy that file there" in problem and "Base weights 'none'" in problem
    empty_keras_home.mkdir(parents=True)
    (empty_keras_home / start_weights.IMAGENET_NOTOP_FILE).write_bytes(b"weights")
    assert start_weights.missing_start_weights(seed) is None
    assert start_weights.missing_start_weights({**seed, "weights": "none", "arch": "vgg16_bn"}) is None
    gone = str(tmp_path / "base.weights.h5")
    assert f"{gone}, which no longer exists" in start_weights.missing_start_weights({**seed, "weights": gone})


@pytest.mark.slow
def test_a_run_that_failed_for_the_imagenet_weights_offers_no_resume_until_they_are_there(walkthrough_store,
                                                                                           empty_keras_home):
    seed = walkthrough_store["seed"]
    runs = open_page("runs")
    next(s for s in runs.selectbox if s.label == "Run").select(seed).run()
    assert not [b for b in runs.button if b.key == f"resume_{seed}"]
    assert any("copy that file there" in unescape(i.value) for i in runs.info)
    train = open_page("train")  # the latest run is the failed one
    assert not [b for b in train.button if b.key == "resume_latest"]
    assert any("copy that file there" in unescape(i.value) for i in train.info)

    empty_keras_home.mkdir(parents=True)
    (empty_keras_home / start_weights.IMAGENET_NOTOP_FILE).write_bytes(b"weights")
    assert [b for b in open_page("train").button if b.key == "resume_latest"]


@pytest.mark.slow
def test_the_uploader_help_states_the_real_limits(tiny_run, monkeypatch):
    from cifar_core.data.image_limits import MAX_FILE_BYTES, MAX_PIXELS

    store, _ = tiny_run
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(store.root))
    help_text = open_page("classify").get("file_uploader")[0].proto.help
    assert f"{MAX_FILE_BYTES // 2**20} MB" in help_text and f"{MAX_PIXELS:,} pixels" in help_text
    assert "any size" not in help_text


# ---------------------------------------------------------------- 8. a bad ?model= link


@pytest.mark.slow
def test_a_model_link_that_names_no_model_is_said_once(tiny_run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_pages import ROOT, TIMEOUT

    store, summary = tiny_run
    monkeypatch.setenv("CIFAR_ARTIFACTS", str(store.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params["model"] = "no-such-run"
    at.run()
    said = [unescape(w.value) for w in at.sidebar.warning if "not found" in w.value]
    assert said == [f"Model no-such-run not found; showing the run {summary['run_id']} · test acc {summary['test_accuracy']:.1%}."]
    assert at.selectbox(key="model_pick").value == summary["run_id"]
    at.run()  # the link now names the model shown
    assert re.search(r"no.such.run", shown(at.sidebar)) is None
