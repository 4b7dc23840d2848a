"""Model bundles (issue 24): a download keeps the class names, the temperature and the "none of these" threshold,
`predict --model BUNDLE` uses them, and a zip that is not a bundle is refused in words before anything loads."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.special import softmax

from cifar_core.model import bundle_open
from cifar_core.predict import calibration, ood

NAMES = ("hedgehog", "teapot", "violin")
TEMPERATURE = 0.5
SHIPPED = Path(__file__).resolve().parents[1] / "artifacts" / "default"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory, tiny_data) -> Path:
    """A 3-class tiny model with its own class names, a temperature and a "none of these" detector."""
    from conftest import tiny_config

    from cifar_core.data.classes import write_class_names
    from cifar_core.model.vgg import build_model
    from cifar_core.predict.model_outputs import batch_outputs

    folder = tmp_path_factory.mktemp("bundle_model")
    config = tiny_config(tiny_data)
    model = build_model(config, num_classes=len(NAMES))
    model.save(folder / "model.keras")
    (folder / "config.json").write_text(config.to_json())
    write_class_names(folder, NAMES)
    calibration.write(folder, calibration.Calibration(TEMPERATURE, False, 500, reason="set by the test"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (160, 32, 32, 3), dtype=np.uint8)
    out = batch_outputs(model, images, input_size=32, tta=False)
    ood.write(folder, ood.fit(out.take(slice(0, 110)), out.take(slice(110, None)), tta=False, layer="block2_pool"))
    return folder


def test_a_downloaded_bundle_predicts_with_its_names_temperature_and_threshold(model_folder, tmp_path, capsys):
    import keras

    from cifar_core.cli.main import main

    assert main(["export", "--format", "bundle", "--model", str(model_folder), "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    zipped = Path(report["path"])
    assert zipped.name == f"{model_folder.name}_bundle.zip" and report["class_names"] == list(NAMES)
    with zipfile.ZipFile(zipped) as archive:
        assert set(archive.namelist()) == {"model.keras", "classes.json", "calibration.json", "ood.json", "config.json",
                                           "MODEL_CARD.md", "preprocessing.json"}
        card = archive.read("MODEL_CARD.md").decode()
    assert all(name in card for name in NAMES) and "temperature 0.500" in card  # written for a folder without a card

    image = tmp_path / "photo.png"
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    # Independently of the studio's prediction path: the Keras model on VGG16's preprocessing, then softmax(log p / T).
    model = keras.models.load_model(model_folder / "model.keras", compile=False)
    raw = model.predict(keras.applications.vgg16.preprocess_input(pixels[None].astype(np.float32)), verbose=0)[0]
    expected = softmax(np.log(raw.astype(np.float64)) / TEMPERATURE)
    detector = ood.read(model_folder)

    unzipped = tmp_path / "unzipped"
    zipfile.ZipFile(zipped).extractall(unzipped)
    for ref in (zipped, unzipped):
        assert main(["predict", "--model", str(ref), "--top", "3", str(image)]) == 0
        line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert [t["label"] for t in line["top"]] == [NAMES[i] for i in np.argsort(-expected)]
        np.testing.assert_allclose([t["prob"] for t in line["top"]], np.sort(expected)[::-1], atol=1e-4)
        assert line["temperature"] == TEMPERATURE
        assert line["ood_threshold"] == detector.threshold and isinstance(line["none_of_these"], bool)


def test_preprocessing_json_says_what_vgg16_preprocessing_does():
    from cifar_core.ship.bundle import preprocessing

    prep = preprocessing(32, tta=True)
    # Simonyan and Zisserman's ImageNet means, in BGR order as the Caffe-trained VGG16 took them; no scaling.
    assert prep["channel_order"] == "BGR" and prep["scale"] == 1.0
    assert prep["subtract_per_output_channel"] == pytest.approx([103.939, 116.779, 123.68])
    views = prep["test_time_augmentation"]["views"]
    assert prep["resize_to_model_input"] is None and len(views) == 6 and sum(v["weight"] for v in views) == pytest.approx(1.0)
    assert {"shift": [0, 0], "mirrored": True, "weight": 0.25} in views
    assert preprocessing(64, tta=False)["resize_to_model_input"] == "bilinear"


def test_the_shipped_models_bundle_keeps_its_card_and_every_file():
    from cifar_core.ship.bundle import bundle_bytes

    with zipfile.ZipFile(io.BytesIO(bundle_bytes(SHIPPED))) as archive:
        names = set(archive.namelist())
        assert archive.read("MODEL_CARD.md") == (SHIPPED / "MODEL_CARD.md").read_bytes()
        assert archive.read("ood.json") == (SHIPPED / "ood.json").read_bytes()
    assert {"model.keras", "classes.json", "calibration.json", "ood.json", "config.json", "evaluation.json", "MODEL_CARD.md",
            "preprocessing.json"} <= names
    assert names <= set(bundle_open.MEMBERS)


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize("members, words", [
    ({"model.keras": b"x", "run.sh": b"rm -rf /"}, "'run.sh', which a bundle never does"),
    ({"../model.keras": b"x"}, "which a bundle never does"),
    ({"a/b/model.keras": b"x"}, "which a bundle never does"),
    ({"classes.json": b"[]"}, "holds no model.keras"),
    ({f"extra{i}.json": b"{}" for i in range(len(bundle_open.MEMBERS) + 1)}, "more than the"),
])
def test_a_zip_that_is_not_a_bundle_is_refused_in_words(tmp_path, members, words):
    with pytest.raises(bundle_open.BundleError, match=words.replace("(", r"\(")):
        bundle_open.open_bundle(zip_of(tmp_path / "evil.zip", members))
    assert not (tmp_path / "artifacts" / "cache" / "bundles").exists() or not any(
        (p / "model.keras").exists() for p in (tmp_path / "artifacts" / "cache" / "bundles").iterdir())


def test_a_member_larger_than_its_cap_and_a_non_zip_are_refused(tmp_path, monkeypatch):
    monkeypatch.setitem(bundle_open.MEMBERS, "classes.json", 10)
    with pytest.raises(bundle_open.BundleError, match="declares 11 bytes"):
        bundle_open.open_bundle(zip_of(tmp_path / "big.zip", {"model.keras": b"x", "classes.json": b"x" * 11}))
    (tmp_path / "plain.zip").write_bytes(b"not a zip at all")
    with pytest.raises(bundle_open.BundleError, match="not a readable zip file"):
        bundle_open.open_bundle(tmp_path / "plain.zip")


def test_a_bundle_zipped_again_inside_one_folder_opens_and_the_cli_refuses_a_bad_one_in_one_line(tmp_path, capsys):
    from cifar_core.cli.main import main

    folder = bundle_open.open_bundle(zip_of(tmp_path / "again.zip", {"mine/model.keras": b"k", "mine/classes.json": b"[]"}))
    assert (folder / "model.keras").read_bytes() == b"k" and (folder / "classes.json").is_file()
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    assert main(["predict", "--model", str(zip_of(tmp_path / "bad.zip", {"notes.txt": b""})), str(image)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a model bundle" in err[0] and "Traceback" not in err[0]
