"""Class lists from the data, `--classes`, class names stored with the model, and transfer from a trained base."""

import json
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.classes import ClassesError, model_class_names, write_class_names
from cifar_core.config import ConfigError, parse_config
from cifar_core.data.images import DataError
from cifar_core.data.loader import load_dataset, select_classes
from tests.conftest import synthetic_images, tiny_config

SUBSET = ("cat", "dog", "ship")


def write_custom_folders(root, names, n_train=6, n_test=2):
    """An image-folder dataset whose classes are `names` (synthetic CIFAR patterns 0.. under other names)."""
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = synthetic_images(n, seed=3)
        for i, (img, label) in enumerate(zip(x, y)):
            if label < len(names):
                d = root / split / names[label]
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(d / f"{i:04d}.png")
    return root


def test_an_image_folder_dataset_may_hold_any_classes(tmp_path):
    root = write_custom_folders(tmp_path / "d", ["tulip", "rose", "daisy"])
    data = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert data.class_names == ("daisy", "rose", "tulip")  # sorted folder names
    assert sorted(np.unique(data.y_train)) == [0, 1, 2] and len(data.y_test) == 6
    cached = load_dataset(str(root), cache_dir=tmp_path / "cache")
    assert cached.class_names == data.class_names


def test_train_and_test_must_hold_the_same_classes(tmp_path):
    root = write_custom_folders(tmp_path / "d", ["tulip", "rose", "daisy"])
    shutil.rmtree(root / "test" / "rose")
    with pytest.raises(DataError, match="has no folder for: rose"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")


def test_select_classes_relabels_in_the_order_asked_or_the_datasets(tiny_data, tmp_path):
    data = load_dataset(str(tiny_data), cache_dir=tmp_path)
    picked = select_classes(data, ("ship", "cat"))
    assert picked.class_names == ("ship", "cat")
    assert (picked.x_train[picked.y_train == 0] == data.x_train[data.y_train == CLASS_NAMES.index("ship")]).all()
    assert len(picked.y_test) == 2 * (data.y_test == 0).sum()
    assert select_classes(data, ("ship", "cat"), in_data_order=True).class_names == ("cat", "ship")


@pytest.mark.parametrize("names, message", [
    (("cat", "unicorn"), "no class 'unicorn' in this dataset; its classes are: airplane, automobile"),
    (("cat", "cat"), "each class must be named once"),
    (("cat",), "at least two classes"),
])
def test_bad_class_names_get_a_message_naming_the_classes_that_exist(tiny_data, tmp_path, names, message):
    data = load_dataset(str(tiny_data), cache_dir=tmp_path)
    with pytest.raises(DataError, match=message):
        select_classes(data, names)


def test_classes_are_parsed_from_text_and_validated():
    assert parse_config({"classes": "dog, frog ,horse"}).classes == ("dog", "frog", "horse")
    assert parse_config({"classes": ["dog", "frog,horse"]}).classes == ("dog", "frog", "horse")  # CLI: --classes dog frog,horse
    assert parse_config({"classes": ""}).classes is None
    with pytest.raises(ConfigError) as info:
        parse_config({"classes": "dog"})
    assert "two or more different class names" in info.value.errors["classes"]
    config = parse_config({"classes": "ship,cat"})
    assert parse_config(json.loads(config.to_json())).classes == ("ship", "cat")  # round trip through config.json


def test_model_class_names_come_from_the_file_beside_the_model(tmp_path):
    model = tmp_path / "model.keras"
    assert model_class_names(model, 10) == CLASS_NAMES  # models saved before class lists: CIFAR-10
    assert model_class_names(model, 3) == ("class 0", "class 1", "class 2")
    write_class_names(tmp_path, SUBSET)
    assert model_class_names(model) == SUBSET and model_class_names(model, 3) == SUBSET
    with pytest.raises(ClassesError, match="names 3 classes but the model beside it has 10 outputs"):
        model_class_names(model, 10)  # a file that does not match the model is another model's
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(ClassesError, match="is not valid JSON"):
        model_class_names(model, 10)


def _classes_file(tmp_path, text):
    (tmp_path / "classes.json").write_text(text, encoding="utf-8")
    return tmp_path / "model.keras"


@pytest.mark.parametrize("content, message", [
    ({"class_names": ["cat", "dog", "cat"]}, "each class must be named once; repeated: 'cat'"),
    ({"class_names": ["cat", "", "dog"]}, "must not be empty or blank"),
    ({"class_names": ["cat", "   ", "dog"]}, "must not be empty or blank"),
    ({"class_names": ["cat", 3, "dog"]}, "must be a list of strings"),
    ({"class_names": "cat,dog,ship"}, "must be a list of strings"),
    ({"class_names": ["cat"]}, "at least two class names"),
    ({"class_names": ["cat", "x" * 201, "dog"]}, "at most 200 characters long; 'xxxx"),
    ({"class_names": ["cat", "line\nbreak", "dog"]}, "control characters"),
    ({"class_names": ["cat", "\u202eevil", "dog"]}, "bidirectional-text"),
    (["cat", "dog", "ship"], 'no "class_names" list'),
    ({"names": ["cat", "dog", "ship"]}, 'no "class_names" list'),
])
def test_an_unusable_classes_json_is_refused_saying_why(tmp_path, content, message):
    model = _classes_file(tmp_path, json.dumps(content))
    with pytest.raises(ClassesError, match=re.escape(message)):
        model_class_names(model, 3)


def test_classes_json_accepts_any_text_of_up_to_200_characters(tmp_path):
    names = ["![b](http://127.0.0.1:9/b.png)", "<img src=x>", "a/b", "قطة", "x" * 200, "**bold**", ":red[x]", "$x$"]
    assert model_class_names(_classes_file(tmp_path, json.dumps({"class_names": names})), len(names)) == tuple(names)


def test_a_classes_json_larger_than_the_limit_is_not_read(tmp_path):
    from cifar_core.data.classes import MAX_CLASSES_BYTES

    model = _classes_file(tmp_path, json.dumps({"class_names": ["a", "b"]}) + " " * MAX_CLASSES_BYTES)
    with pytest.raises(ClassesError, match="is larger than 1 MiB"):
        model_class_names(model, 2)
    deep = _classes_file(tmp_path, "[" * 100_000 + "]" * 100_000)  # nesting that would exhaust the parser's stack
    with pytest.raises(ClassesError, match="nests more than 64 levels deep"):
        model_class_names(deep, 2)


def test_class_folders_with_unusable_names_are_refused_in_words(tmp_path):
    root = write_custom_folders(tmp_path / "d", ["tulip", "rose", "x" * 201])
    with pytest.raises(DataError, match="cannot all be class names: class names may be at most 200 characters"):
        load_dataset(str(root), cache_dir=tmp_path / "cache")
    from cifar_core.data.census import folder_census

    found = [p for p in folder_census(root)["problems"] if p["kind"] == "class_names"]  # the Data page's health report
    assert len(found) == 1 and found[0]["blocking"] and "rename them" in found[0]["message"]


@pytest.fixture(scope="module")
def subset_run(tmp_path_factory, tiny_data):
    """A run trained on three of the tiny dataset's classes: (store, summary)."""
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    root = tmp_path_factory.mktemp("subset_run")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CIFAR_ARTIFACTS", str(root))
        store = RunStore(root)
        summary = train(tiny_config(tiny_data, classes=("ship", "dog", "cat"), epochs_head=1, epochs_finetune=1), store=store)
    return store, summary


def test_a_run_on_some_classes_predicts_only_those_and_stores_their_names(subset_run):
    from cifar_core.model.vgg import load_model

    store, summary = subset_run
    assert summary["status"] == "completed"
    assert summary["class_names"] == list(SUBSET)  # the dataset's order, whatever order was asked
    run_dir = store.get(summary["run_id"]).dir
    model = load_model(run_dir / "model.keras")
    assert model.output_shape[-1] == 3
    assert model_class_names(run_dir / "model.keras", 3) == SUBSET
    assert summary["test_images"] == 3 * 4
    saved = json.loads((run_dir / "evaluation.json").read_text())
    assert saved["class_names"] == list(SUBSET) and set(saved["per_class"]) == set(SUBSET)


def test_evaluate_and_predict_use_the_models_classes(subset_run, tiny_data, capsys, tmp_path):
    from cifar_core.cli.main import main

    store, summary = subset_run
    run_dir = store.get(summary["run_id"]).dir
    assert main(["evaluate", "--model", str(run_dir / "model.keras"), "--data-dir", str(tiny_data)]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["class_names"] == list(SUBSET) and out["n"] == 12
    image = tmp_path / "x.png"
    Image.fromarray(synthetic_images(1, 0)[0][CLASS_NAMES.index("ship")]).save(image)
    assert main(["predict", "--model", str(run_dir / "model.keras"), "--top", "3", str(image)]) == 0
    top = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top"]
    assert sorted(t["label"] for t in top) == sorted(SUBSET)
    assert main(["predict", "--model", str(run_dir / "model.keras"), "--top", "5", str(image)]) == 2  # the model has 3
    assert "from 1 to 3" in capsys.readouterr().err


def test_evaluating_on_data_without_the_models_classes_says_which_are_missing(subset_run, tmp_path, capsys):
    from cifar_core.cli.main import main

    store, summary = subset_run
    other = write_custom_folders(tmp_path / "flowers", ["tulip", "rose"])
    code = main(["evaluate", "--model", str(store.get(summary["run_id"]).dir / "model.keras"), "--data-dir", str(other)])
    err = capsys.readouterr().err
    assert code != 0 and "no class 'cat', 'dog', 'ship' in this dataset; its classes are: rose, tulip" in err
    assert "Traceback" not in err


def test_a_new_run_starts_from_a_trained_models_base(subset_run, tiny_data):
    """Transfer: --weights MODEL.keras copies the trained base into a model with a new head and other classes."""
    from cifar_core.model.vgg import build_model, load_model

    store, summary = subset_run
    trained = store.get(summary["run_id"]).dir / "model.keras"
    config = tiny_config(tiny_data, classes=("airplane", "frog"), weights=str(trained))
    model = build_model(config, num_classes=2)
    source = load_model(trained).get_layer("base")
    copied = [layer for layer in model.get_layer("base").layers if layer.weights]
    assert len(copied) == 2 * 7  # the 7 convolutions of blocks 1-3 and their BatchNorm layers (the tiny config cuts at block3_pool)
    for layer in copied:
        for got, want in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want)
    assert model.output_shape[-1] == 2


def test_a_base_of_another_width_or_a_shallower_cut_is_refused_before_training(subset_run, tiny_data):
    store, summary = subset_run
    trained = str(store.get(summary["run_id"]).dir / "model.keras")  # full width, cut after block3
    with pytest.raises(ConfigError) as info:
        tiny_config(tiny_data, weights=trained, width=0.5, cut="block5_pool")
    assert info.value.errors["weights"] == ("that model's base has width 1.0 (this run: 0.5), cut block3_pool (this run: "
                                            "block5_pool, deeper); use the same architecture and width, and the same or an earlier cut")
    assert tiny_config(tiny_data, weights=trained).weights == trained


def test_a_model_file_of_another_width_is_refused_when_its_base_is_copied(subset_run, tiny_data, tmp_path):
    from cifar_core.model.vgg import WeightsError, build_model

    store, summary = subset_run
    loose = tmp_path / "model.keras"  # no config.json beside it: only the layers can tell
    shutil.copy(store.get(summary["run_id"]).dir / "model.keras", loose)
    with pytest.raises(WeightsError, match="another architecture or width than this run"):
        build_model(tiny_config(tiny_data, weights=str(loose), width=0.5), num_classes=2)


def test_the_dashboard_form_refuses_unknown_classes_before_starting(tiny_data):
    from cifar_core.views import train_form

    with pytest.raises(ConfigError) as info:
        train_form.check_data(tiny_config(tiny_data, classes=("cat", "unicorn")))
    assert "no class 'unicorn' in this data folder" in info.value.errors["classes"]
    assert train_form.data_class_names(str(tiny_data)) == CLASS_NAMES
    train_form.check_data(tiny_config(tiny_data, classes=("cat", "dog")))


@pytest.mark.slow
def test_bench_transfer_quick_runs_the_three_arms(tiny_data, capsys):
    """`bench transfer --quick`: the pre-training and the three arms complete and are reported (no accuracy claims)."""
    from cifar_core.cli.main import main
    from cifar_core.bench.transfer import ARMS, PRETRAIN_CLASSES, TARGET_CLASSES

    assert main(["bench", "transfer", "--quick", "--data-dir", str(tiny_data)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["arm"] for r in rows] == ["pre-train", *ARMS]
    assert rows[0]["classes"] == list(PRETRAIN_CLASSES)
    for row in rows[1:]:
        assert row["classes"] == list(TARGET_CLASSES) and row["test_images"] == 5 * 4
        assert 0 <= row["test_accuracy"] <= 1 and row["seconds"] > 0
    assert rows[1]["weights"] == "none" and rows[2]["weights"] == rows[3]["weights"] == "pre-trained base"


def test_cli_refuses_unknown_classes_before_registering_a_run(tiny_data, tmp_path, capsys, monkeypatch):
    from cifar_core.cli.main import main
    from cifar_core.runs.store import RunStore

    monkeypatch.setenv("CIFAR_ARTIFACTS", str(tmp_path / "art"))
    code = main(["train", "--data-dir", str(tiny_data), "--weights", "none", "--arch", "vgg16_bn", "--classes", "cat,unicorn"])
    err = capsys.readouterr().err
    assert code == 2 and "--classes: no class 'unicorn' in this data folder; its classes are: airplane" in err
    assert RunStore(tmp_path / "art").list() == []


def test_a_damaged_model_as_base_weights_fails_the_run_in_words(tiny_data, tmp_path, capsys, monkeypatch):
    from cifar_core.cli.main import main

    monkeypatch.setenv("CIFAR_ARTIFACTS", str(tmp_path / "art"))
    damaged = tmp_path / "damaged.keras"
    damaged.write_bytes(b"not a zip")
    code = main(["train", "--data-dir", str(tiny_data), "--weights", str(damaged), "--arch", "vgg16_bn", "--epochs-head", "1",
                 "--epochs-finetune", "0"])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err and "Error:" not in err
    assert "could not be loaded: it is not a complete Keras archive" in json.loads(out.strip().splitlines()[-1])["error"]
