"""Models you can take elsewhere: SavedModel, TFLite, TFLite int8 and ONNX, each checked against Keras.

Every exported model takes float32 RGB pixels in 0..255, shape (N, 32, 32, 3),
and returns the class probabilities (N, classes), in the order of the report's
`class_names` (the model's classes.json): the studio's preprocessing
(VGG16's BGR mean subtraction) is part of the exported graph. Models trained in
mixed bfloat16 are exported in float32 (same weights), which phones, browsers
and ONNX runtimes all run.

The parity check always runs: the exported model and the Keras model classify
the same test images; a float export must agree on the top-1 class for at least
FLOAT_MIN_AGREEMENT of them, an int8 one for INT8_MIN_AGREEMENT.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from cifar_core.analysis import embeddings
from cifar_core.predict.calibration import read as read_calibration
from cifar_core.data.images import NATIVE_SIZE
from cifar_core.base.errors import StudioError
from cifar_core.base import bounded_json
from cifar_core.base.paths import artifacts_dir

FORMATS = ("savedmodel", "tflite", "tflite-int8", "onnx")
FILE_NAMES = {"savedmodel": "saved_model", "tflite": "model.tflite", "tflite-int8": "model_int8.tflite", "onnx": "model.onnx"}
FLOAT_MIN_AGREEMENT = 0.995
# Quantising weights and activations to 8 bits moves close calls; below this the
# int8 model is no longer the same classifier.
INT8_MIN_AGREEMENT = 0.97
PARITY_IMAGES = 1000
REPRESENTATIVE_IMAGES = 200  # training images that calibrate the int8 activation ranges
LATENCY_RUNS = 50
ONNX_OPSET = 17

Predict = Callable[[np.ndarray], np.ndarray]


class ExportError(StudioError, RuntimeError):
    """The export could not be made or checked; the message says why."""


def min_agreement(fmt: str) -> float:
    return INT8_MIN_AGREEMENT if fmt == "tflite-int8" else FLOAT_MIN_AGREEMENT


def default_out_dir(model_path: Path) -> Path:
    """A run's exports go in its folder; any other model's (the shipped one) under artifacts/exports/."""
    own = embeddings.run_folder(model_path)
    return own / "exports" if own else artifacts_dir() / "exports" / embeddings.model_key(model_path)


# ---------------------------------------------------------------- building the graph


def float32_model(model):
    """The same model rebuilt with every layer in float32 (mixed-precision policies dropped), same weights."""
    import keras

    def strip(config):
        if isinstance(config, dict):
            if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
                return {**config, "config": {**config["config"], "name": "float32"}}
            return {key: strip(value) for key, value in config.items()}
        if isinstance(config, list):
            return [strip(value) for value in config]
        return config

    clone = keras.Model.from_config(strip(model.get_config()))
    clone.set_weights(model.get_weights())  # mixed-precision variables are float32 already
    return clone


def serving_function(model):
    """A tf.function: float32 pixels (N, 32, 32, 3) in 0..255 -> {"probabilities": (N, 10)}."""
    import tensorflow as tf

    from cifar_core.data.pipeline import preprocess

    size = int(model.input_shape[1])
    return tf.function(lambda image: {"probabilities": model(preprocess(image, size), training=False)},
                       input_signature=[tf.TensorSpec([None, NATIVE_SIZE, NATIVE_SIZE, 3], tf.float32, name="image")])


def _frozen(model):
    """The serving function with the weights folded in as constants (what the TFLite converter needs:
    it cannot read Keras 3's resource variables)."""
    from cifar_core.base import compat

    return compat.freeze(serving_function(model).get_concrete_function())


# ---------------------------------------------------------------- writers


def write_savedmodel(model, dest: Path) -> None:
    import tensorflow as tf

    module = tf.Module()
    module.model = model  # tracked, so the variables are saved
    module.serve = serving_function(model)
    tf.saved_model.save(module, str(dest), signatures={"serving_default": module.serve})


def write_tflite(model, dest: Path, representative: np.ndarray | None = None) -> None:
    """Float TFLite, or with `representative` images int8: weights and activations of every layer
    but the fully connected ones (the head, 3% of the weights), which stay float32.

    Why the head stays float: the converter folds the head's BatchNorm into the last Dense layer,
    whose weights then span ranges no single int8 scale per output fits; on the shipped model,
    quantising it too lowered the accuracy from 85.7% to 80.5% (top-1 agreement 92%), keeping it
    float keeps 85.8% (99.1%). TensorFlow's quantisation debugger is its tool for this
    ("selective quantisation"); input and output stay float32.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions([_frozen(model)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if representative is None:
            dest.write_bytes(converter.convert())
            return
        calibration = lambda: ([image[None].astype(np.float32)] for image in representative)  # noqa: E731
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=calibration,
            debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=["FULLY_CONNECTED"]))
        dest.write_bytes(debugger.get_nondebug_quantized_model())


def write_onnx(model, dest: Path) -> None:
    tf2onnx = _onnx_tools()[0]
    fn = serving_function(model)
    tf2onnx.convert.from_function(fn, input_signature=fn.input_signature, opset=ONNX_OPSET, output_path=str(dest))


def _onnx_tools():
    try:
        import onnxruntime
        import tf2onnx
    except ImportError as err:
        raise ExportError(f"ONNX export needs tf2onnx and onnxruntime ({err}); install them with "
                          "pip install tf2onnx onnxruntime, or pick another format.") from err
    return tf2onnx, onnxruntime


# ---------------------------------------------------------------- readers


def load_exported(path: Path, fmt: str) -> Predict:
    """A function float32 pixels (N, 32, 32, 3) -> probabilities (N, 10) running the exported file."""
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        return lambda x: serve(image=tf.constant(x, tf.float32))["probabilities"].numpy()
    if fmt == "onnx":
        session = _onnx_tools()[1].InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.asarray(x, np.float32)})[0]
    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter warns that LiteRT will replace it
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def predict(x: np.ndarray) -> np.ndarray:
        if tuple(interpreter.get_input_details()[0]["shape"]) != x.shape:
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], np.asarray(x, np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return predict


# ---------------------------------------------------------------- the check


def predict_in_batches(predict: Predict, x: np.ndarray, batch: int = 100) -> np.ndarray:
    return np.concatenate([predict(x[i:i + batch]) for i in range(0, len(x), batch)])


def latency_ms(predict: Predict, image: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median wall time of one single-image call, after two warm-up calls."""
    batch = image[None]
    for _ in range(2):
        predict(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def size_bytes(path: Path) -> int:
    path = Path(path)
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def parity(reference: np.ndarray, exported: np.ndarray, y: np.ndarray, fmt: str) -> dict:
    """Agreement of the exported model's top-1 class with the reference's, both accuracies, and the verdict."""
    agreement = float(np.mean(reference.argmax(1) == exported.argmax(1)))
    return {
        "images": int(len(y)),
        "agreement": agreement,
        "min_agreement": min_agreement(fmt),
        "passed": bool(agreement >= min_agreement(fmt)),
        "keras_accuracy": float(np.mean(reference.argmax(1) == y)),
        "export_accuracy": float(np.mean(exported.argmax(1) == y)),
        "max_probability_difference": float(np.abs(reference - exported).max()) if len(y) else 0.0,
    }


def sample(n_total: int, n: int, seed: int) -> np.ndarray:
    """`n` sorted indices drawn without replacement (all of them when there are fewer)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


def export_model(model_path: Path, fmt: str, x_test: np.ndarray, y_test: np.ndarray, *, x_train: np.ndarray | None = None,
                 out_dir: Path | None = None, images: int = PARITY_IMAGES, seed: int = 0, classifier=None) -> dict:
    """Export the model at `model_path` to `fmt`, check it against Keras on `images` test images, and
    write the report as `<out_dir>/<fmt>.json`. Returns the report (its "passed" says whether to use it).

    `classifier` is the model's loaded `inference.Classifier`, when the caller has it already.
    """
    from cifar_core.predict.inference import Classifier

    _refuse_early(fmt, x_test, x_train)
    # The studio's own prediction path, one view: the exported network is the model itself, so it is checked
    # against the model without test-time augmentation (a model trained for TTA says so in the report).
    keras_model = classifier if classifier is not None and not classifier.tta else Classifier(model_path, tta=False)
    out_dir = Path(out_dir or default_out_dir(model_path))
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / FILE_NAMES[fmt]
    model = float32_model(keras_model.model)
    started = time.perf_counter()
    _write(model, fmt, dest, x_train, seed)
    export_seconds = time.perf_counter() - started
    report = _report(keras_model, model_path, fmt, dest, x_test, y_test, images=images, seed=seed,
                     export_seconds=export_seconds)
    (out_dir / f"{fmt}.json").write_text(json.dumps(report, indent=2))
    return report


def _refuse_early(fmt: str, x_test: np.ndarray, x_train: np.ndarray | None) -> None:
    """ExportError, before any work, for an unknown format, no test images, int8 without training images, or
    ONNX without its converter."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    if len(x_test) == 0:
        raise ExportError("The parity check needs test images, and the data folder has none.")
    if fmt == "tflite-int8" and (x_train is None or len(x_train) == 0):
        raise ExportError("TFLite int8 needs training images to calibrate on, and the data folder has none.")
    if fmt == "onnx":
        _onnx_tools()


def _write(model, fmt: str, dest: Path, x_train: np.ndarray | None, seed: int) -> None:
    """Write `model` as `fmt` at `dest`: next to it first, then swapped in, so a failed export never leaves half a model."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{fmt}-")) / FILE_NAMES[fmt]
    try:
        if fmt == "savedmodel":
            write_savedmodel(model, tmp)
        elif fmt == "onnx":
            write_onnx(model, tmp)
        else:
            calibration = x_train[sample(len(x_train), REPRESENTATIVE_IMAGES, seed)] if fmt == "tflite-int8" else None
            write_tflite(model, tmp, calibration)
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except ExportError:
        raise
    except Exception as err:  # the converters fail with many exception types; their last line says why
        last_line = (str(err).strip().splitlines() or [""])[-1]
        raise ExportError(f"The {fmt} export failed ({type(err).__name__}: {last_line}).") from err
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def _report(keras_model, model_path: Path, fmt: str, dest: Path, x_test: np.ndarray, y_test: np.ndarray, *,
            images: int, seed: int, export_seconds: float) -> dict:
    """The export's report: its file and size, its parity with the Keras model on `images` test images, both
    latencies, and what a user of the file must know (input, output, class order, TTA, temperature)."""
    from cifar_core.predict.inference import trained_with_tta

    pick = sample(len(x_test), images, seed)
    x, y = x_test[pick], np.asarray(y_test)[pick]
    exported = load_exported(dest, fmt)
    return {
        "format": fmt,
        "path": str(dest),
        "model": str(model_path),
        "size_bytes": size_bytes(dest),
        "keras_size_bytes": Path(model_path).stat().st_size,
        "export_seconds": round(export_seconds, 2),
        **parity(predict_in_batches(keras_model.predict_arrays, x), predict_in_batches(exported, x.astype(np.float32)), y, fmt),
        "latency_ms": latency_ms(exported, x[0].astype(np.float32)),
        "keras_latency_ms": latency_ms(keras_model.predict_arrays, x[0]),
        "input": "float32 RGB pixels 0..255, shape (N, 32, 32, 3)",
        "output": f"probabilities (N, {len(keras_model.class_names)}) in the order of class_names",
        "class_names": list(keras_model.class_names),
        # One view per image; a model trained for TTA gets its studio accuracy by averaging the views
        # of `augment.tta_views` (image, mirror, 1-pixel shifts) through the exported model.
        "model_trained_with_tta": trained_with_tta(Path(model_path)),
        # The exported network's outputs are uncalibrated; the studio shows softmax(log(p) / temperature),
        # p being the views' average when the temperature was fitted with TTA. None: no temperature stored.
        "calibration": ({"temperature": stored.temperature, "fitted_with_tta": stored.tta, "validation_images": stored.images}
                        if (stored := read_calibration(Path(model_path).parent)) is not None else None),
    }


def read_report(out_dir: Path, fmt: str) -> dict | None:
    """The report of an earlier export of `fmt` in `out_dir`, if its model is still there."""
    try:
        report = bounded_json.read(Path(out_dir) / f"{fmt}.json")
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and Path(report.get("path", "")).exists() else None


def failure_message(report: dict) -> str:
    """Why an export that failed its parity check must not be used, in words."""
    return (f"The {report['format']} export agrees with the Keras model on {report['agreement']:.1%} of "
            f"{report['images']:,} test images; it needs at least {report['min_agreement']:.1%}. Do not use it.")


def download_name(model_name: str, fmt: str) -> str:
    """The file name a download of `fmt` gets (a SavedModel folder is zipped)."""
    return f"{model_name}_{FILE_NAMES[fmt]}" + (".zip" if fmt == "savedmodel" else "")


def download_bytes(path: Path) -> bytes:
    """The file's bytes, or a folder (a SavedModel) zipped."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        return Path(shutil.make_archive(str(Path(tmp) / path.name), "zip", root_dir=path.parent, base_dir=path.name)).read_bytes()
