"""One file that keeps a model's meaning: the bundle the Runs page's download and `export --format bundle` give.

A bare `model.keras` knows neither its class names nor its temperature: `predict` on it answers "class 4".
A bundle is a zip of the model folder's files that keep them (`model/bundle_open.MEMBERS`): the model, its
class names, its temperature, its "none of these" threshold, its dataset record, its training settings (whether
it predicts with test-time augmentation), its test accuracy, its model card (a short one written here when the
folder has none) and `preprocessing.json`, which says what an input goes through before the network. `predict
--model BUNDLE.zip`, `--model` on the unzipped folder, and the Classify page load it as they load a run.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from cifar_core.base import bounded_json
from cifar_core.base.atomic_io import atomic_write_bytes
from cifar_core.base.errors import StudioError
from cifar_core.data import augment
from cifar_core.data.classes import model_class_names
from cifar_core.data.images import NATIVE_SIZE
from cifar_core.model.bundle_open import MEMBERS, MODEL_FILE
from cifar_core.predict import calibration, ood

CARD_FILE = "MODEL_CARD.md"
PREPROCESSING_FILE = "preprocessing.json"
COPIED = [name for name in MEMBERS if name not in (CARD_FILE, PREPROCESSING_FILE)]


def preprocessing(input_size: int, tta: bool) -> dict:
    """What an input goes through before the network, read off `data.pipeline.preprocess` itself (probed with
    pure-colour images), so that the file says what the code does."""
    from cifar_core.data.pipeline import preprocess

    probes = np.zeros((4, 1, 1, 3), np.uint8)
    probes[1:, 0, 0, :] = 255 * np.eye(3, dtype=np.uint8)  # black, then pure red, green, blue
    out = np.asarray(preprocess(probes, 1), np.float64)[:, 0, 0, :]
    moved = out[1:] - out[0]  # row c: what a full input channel c does to each output channel
    order = [int(np.argmax(np.abs(row))) for row in moved]  # input channel -> output channel
    return {
        "input": f"any image, converted to RGB (transparency over white) and resized to {NATIVE_SIZE}x{NATIVE_SIZE} "
                 "pixels with bilinear filtering, as `predict` and the Classify page do",
        "pixels": "uint8 0..255, taken as float32 without dividing",
        "model_input_size": input_size,
        "resize_to_model_input": "bilinear" if input_size != NATIVE_SIZE else None,
        "channel_order": "".join("RGB"[order.index(c)] for c in range(3)),
        "scale": round(float(moved.max(axis=1).mean()) / 255.0, 6),
        "subtract_per_output_channel": [round(float(-v), 3) for v in out[0]],
        # The views `augment.tta_views` makes: each shift (rows, columns; filled by reflection), then its mirror.
        "test_time_augmentation": {
            "average": "the weighted mean of the class probabilities over these views (shifts in pixels down and right, "
                       "filled by reflection; mirrored left to right)",
            "views": [{"shift": [dy, dx], "mirrored": mirrored, "weight": w / 2}
                      for dy, dx, w in augment.TTA_SHIFTS for mirrored in (False, True)]} if tta else None,
        "output": "class probabilities in the order of classes.json",
        "calibration": "softmax(log(p) / T) with T from calibration.json (T = 1 without one)",
        "none_of_these": "an input whose score (ood.json's method) is below ood.json's threshold looks like none of the classes",
    }


def short_card(folder: Path) -> str:
    """A model card for a model folder without one: what it is, what it knows, and what is in the bundle."""
    try:
        names = model_class_names(folder / MODEL_FILE)
        classes = f"A classifier of {len(names)} classes: {', '.join(names)} (in output order, `classes.json`)."
        stored, detector = calibration.read(folder), ood.read(folder)
    except StudioError as err:  # the bundle is still made: its card says what is wrong
        classes, stored, detector = f"A classifier whose files are damaged: {err}", None, None
    accuracy = _json(folder / "evaluation.json").get("accuracy")
    lines = [
        f"# Model card: {folder.name}",
        "",
        classes,
        f"Test accuracy {accuracy:.2%} (`evaluation.json`)." if isinstance(accuracy, (int, float)) else "No test accuracy recorded.",
        f"Calibration: {stored.basis()}." if stored is not None else "Calibration: none stored; probabilities as the model gives them.",
        f"None of these: {detector.describe()}." if detector is not None else "None of these: no threshold stored.",
        "",
        "Inputs are prepared as `preprocessing.json` says. Load the bundle with "
        "`python -m cifar_core predict --model BUNDLE.zip FILE...`.",
    ]
    return "\n".join(lines) + "\n"


def bundle_bytes(folder: Path) -> bytes:
    """The bundle of the model folder `folder` (holding model.keras), as zip bytes: what a download gives."""
    folder = Path(folder)
    config = _json(folder / "config.json")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in COPIED:
            if (folder / name).is_file():
                # The .keras file is a zip already: stored, not compressed again.
                kind = zipfile.ZIP_STORED if name == MODEL_FILE else zipfile.ZIP_DEFLATED
                archive.write(folder / name, name, compress_type=kind)
        card = (folder / CARD_FILE).read_text() if (folder / CARD_FILE).is_file() else short_card(folder)
        archive.writestr(CARD_FILE, card, compress_type=zipfile.ZIP_DEFLATED)
        prep = preprocessing(int(config.get("input_size") or NATIVE_SIZE), config.get("tta") is True)
        archive.writestr(PREPROCESSING_FILE, json.dumps(prep, indent=2), compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def write_bundle(folder: Path, dest: Path) -> dict:
    """Write the bundle of `folder` to `dest` (a .zip; written beside it first, then renamed) and describe it."""
    data = bundle_bytes(folder)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = archive.namelist()
    return {"format": "bundle", "path": str(dest), "model": str(Path(folder) / MODEL_FILE), "size_bytes": len(data),
            "files": files, "class_names": list(model_class_names(Path(folder) / MODEL_FILE))}


def download_name(model_name: str) -> str:
    return f"{model_name}_bundle.zip"


def _json(path: Path) -> dict:
    try:
        data = bounded_json.read(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
