"""Issue 17's walk from a fresh clone: a zip of class folders is imported by name, trained with the
"yours" preset, then evaluated and used for prediction, on a 5-class dataset and on scikit-learn's digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cifar_core.cli.main import main
from tests.test_datasets import encoded, make_zip

pytestmark = pytest.mark.slow  # trains the preset's trials and its run


def five_classes() -> dict[str, bytes]:
    """Five classes with names CIFAR-10 lacks, each a colour, in photos of another size than 32x32;
    wrapped in one top folder, as zipping a folder makes."""
    colours = {"alder": (200, 40, 40), "birch": (40, 200, 40), "cedar": (40, 40, 200),
               "rowan": (200, 200, 40), "white oak": (40, 200, 200)}
    rng = np.random.default_rng(0)
    members = {}
    for name, colour in colours.items():
        for i in range(10):
            noise = rng.integers(-30, 30, (48, 40, 3))
            pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
            members[f"my trees/{name}/{i}.png"] = encoded(pixels)
    return members


def digits() -> dict[str, bytes]:
    """scikit-learn's bundled digits (8x8 grey, offline), 10 per class, upscaled to 32x32 RGB."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    members = {}
    for label in range(10):
        for i in np.flatnonzero(bunch.target == label)[:10]:
            grey = (bunch.images[i] * (255 / 16)).astype(np.uint8)
            rgb = np.asarray(Image.fromarray(grey).resize((32, 32), Image.NEAREST).convert("RGB"))
            members[f"{label}/{i}.png"] = encoded(rgb)
    return members


@pytest.mark.parametrize("name, members, n_classes", [("trees", five_classes, 5), ("digits", digits, 10)])
def test_import_train_yours_evaluate_and_predict_by_dataset_name(name, members, n_classes, tmp_path,
                                                                 isolated_artifacts, capsys):
    source = make_zip(tmp_path / f"{name}.zip", members())
    assert main(["data", "import", str(source), "--name", name, "--test-fraction", "0.2", "--seed", "0"]) == 0
    imported = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(imported["classes"]) == n_classes and imported["split"]["made"]
    assert all(n == 2 for n in imported["counts"]["test"].values())  # 20% of 10 per class, stratified

    assert main(["train", "--preset", "yours", "--data-dir", name, "--epochs-head", "1", "--epochs-finetune", "1",
                 "--batch-size", "8"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["start_choice"]["chosen"] in [t["candidate"] for t in summary["start_choice"]["trials"]]
    run = summary["run_id"]

    assert main(["evaluate", "--model", run, "--data-dir", name]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(report["class_names"]) == imported["classes"] and report["n"] == 2 * n_classes

    image = next((isolated_artifacts / "datasets" / name / "test").rglob("*.png"))
    assert main(["predict", "--model", run, "--top", str(n_classes), str(image)]) == 0
    predicted = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(t["label"] for t in predicted["top"]) == sorted(imported["classes"])
