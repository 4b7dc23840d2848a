"""VGG16 bases, classifier heads, cut points and freezing.

A model is `Input -> base -> head`, where `base` and `head` are nested Keras
models, so the head can be trained alone on cached base features and still be
the very layers of the full model.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator

import keras
import numpy as np

from cifar_core.model import safe_h5
from cifar_core.config import BLOCK_NAMES, TrainConfig
from cifar_core.base.errors import StudioError, clip, shown
from cifar_core.model.start_weights import IMAGENET_NOTOP_FILE, keras_models_dir

# VGG16's conv widths per block; vgg16_bn keeps the layout and adds BatchNorm.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class WeightsError(StudioError, RuntimeError):
    """Weights could not be obtained or do not fit the architecture."""


class ModelLoadError(StudioError, RuntimeError):
    """A saved model is missing, truncated or not a safe Keras model."""


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Build layers under a dtype policy, restoring the previous one afterwards.

    Keras layers capture the policy when they are created, so scoping it keeps
    mixed precision a property of one model rather than of the process.
    """
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def batchnorm_momentum(steps_per_epoch: int) -> float:
    """BatchNorm's moving-average momentum for a run of `steps_per_epoch` batches per epoch.

    Keras' 0.99 averages over ~100 steps: a run of a few dozen steps would then
    validate and save with statistics still close to their initial (0, 1) and
    score at chance. Averaging over the last quarter epoch instead keeps the
    statistics those of the weights being saved, whatever the run's length.
    """
    return float(min(0.99, max(0.5, 1.0 - 4.0 / max(steps_per_epoch, 1))))


def vgg16_bn(input_shape: tuple[int, int, int], width: float = 1.0, bn_momentum: float = 0.99, bn_scale: bool = True) -> keras.Model:
    """VGG16's layout with BatchNorm after every conv, randomly initialised (no ImageNet weights exist).

    Args:
        width: scales every block's filter count (0.5 -> 32..256 filters).
        bn_momentum: BatchNorm moving-average momentum (see `batchnorm_momentum`).
        bn_scale: whether BatchNorm learns a scale; False fixes it at 1 (airbench94 does so).
    """
    inputs = keras.Input(input_shape)
    x = inputs
    for b, (filters, convs) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, convs + 1):
            x = keras.layers.Conv2D(max(8, round(filters * width)), 3, padding="same", use_bias=False, name=f"block{b}_conv{i}")(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum, scale=bn_scale, name=f"block{b}_bn{i}")(x)
            x = keras.layers.Activation("relu", name=f"block{b}_relu{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    return keras.Model(inputs, x, name="vgg16_bn")


def build_base(arch: str, weights: str, input_size: int, cut: str = "block5_pool", width: float = 1.0,
               bn_momentum: float = 0.99, bn_scale: bool = True) -> keras.Model:
    """The convolutional base, cut after `cut`, with weights 'imagenet', 'none' or a file path."""
    shape = (input_size, input_size, 3)
    if arch == "vgg16_bn" and weights == "imagenet":
        raise WeightsError("vgg16_bn has no ImageNet weights; use weights 'none' (from scratch) or a vgg16_bn weights file.")
    if arch == "vgg16_bn":
        full = vgg16_bn(shape, width, bn_momentum, bn_scale)
    elif weights == "imagenet":
        try:
            full = keras.applications.VGG16(include_top=False, weights="imagenet", input_shape=shape)
        except Exception as err:  # download failures surface as many exception types
            raise WeightsError(
                f"Could not get the ImageNet weights for VGG16 ({type(err).__name__}: {clip(err, 160)}).\n"
                f"Keras downloads {IMAGENET_NOTOP_FILE} into {keras_models_dir()} on first use; "
                "without internet, copy that file there from a machine that has it, "
                "or pass a local weights file (--weights PATH), or train from scratch (--weights none)."
            ) from err
    else:
        full = keras.applications.VGG16(include_top=False, weights=None, input_shape=shape)
    if weights not in ("imagenet", "none") and not weights.endswith(".keras"):
        load_base_weights(full, Path(weights))
    base = full if cut == full.layers[-1].name else keras.Model(full.input, full.get_layer(cut).output)
    if weights.endswith(".keras"):
        base_from_model(base, Path(weights))
    # A fixed name lets the head phase and tooling find the base inside saved models.
    return keras.Model(base.input, base.output, name="base")


def load_base_weights(base: keras.Model, path: Path) -> None:
    """Load a full-base weights file (.weights.h5 or Keras' legacy .h5, e.g. the ImageNet file)."""
    if not path.is_file():
        raise WeightsError(f"Weights file {shown(path, 100)!r} does not exist.")
    expected = sum(math.prod(w.shape) * np.dtype(w.dtype).itemsize for w in base.weights)
    try:
        safe_h5.check_weights_file(path, expected)
    except safe_h5.UnsafeFileError as err:
        raise WeightsError(f"Weights file {shown(path, 100)!r} is refused: {clip(err, 190)}.") from err
    try:
        base.load_weights(str(path))
    except Exception as err:
        raise WeightsError(
            f"Weights file {shown(path, 100)!r} does not fit the {base.name} base "
            f"({type(err).__name__}: {clip(err, 120)}). It must hold the full convolutional base "
            "(include_top=False) of the same architecture."
        ) from err


def base_from_model(base: keras.Model, path: Path) -> None:
    """Copy the base of a trained model (a run's model.keras) into `base`, layer by layer.

    The transfer-learning path: the trained model may have another head and other
    classes; its base must have the same architecture, width and cut (or a deeper cut:
    the layers `base` has are taken).
    """
    try:
        source = load_model(path)
    except ModelLoadError as err:
        raise WeightsError(str(err)) from err  # a failed training reports WeightsError in words
    try:
        trained = source.get_layer("base")
    except ValueError:
        raise WeightsError(f"{str(path)!r} has no 'base' part: it was not saved by a training run of this studio.") from None
    for layer in base.layers:
        if not layer.weights:
            continue
        try:
            donor = trained.get_layer(layer.name)
        except ValueError:
            raise WeightsError(f"The model {str(path)!r} has no layer {layer.name}: its base is cut earlier than this run's "
                               f"(choose the same or an earlier cut point).") from None
        shapes = [tuple(w.shape) for w in donor.weights]
        if shapes != [tuple(w.shape) for w in layer.weights]:
            raise WeightsError(f"The model {str(path)!r} has another architecture or width than this run "
                               f"(layer {layer.name}: {shapes} instead of {[tuple(w.shape) for w in layer.weights]}); "
                               "use the same architecture and width as the model you start from.")
        layer.set_weights(donor.get_weights())


def build_head(feature_shape: tuple[int, ...], head: str, units: tuple[int, ...], dropout: float,
               bn_momentum: float = 0.99, *, num_classes: int) -> keras.Model:
    """The classifier: the seed's Flatten->[Dense->BN->Dropout]*->softmax, or the same after global pooling."""
    inputs = keras.Input(feature_shape)
    x = keras.layers.Flatten()(inputs) if head == "flatten" else keras.layers.GlobalAveragePooling2D()(inputs)
    for u in units:
        x = keras.layers.Dense(u, activation="relu")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
        x = keras.layers.Dropout(dropout)(x)
    # float32 probabilities even under mixed precision, for a stable loss.
    outputs = keras.layers.Dense(num_classes, activation="softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="head")


def build_model(config: TrainConfig, bn_momentum: float = 0.99, *, num_classes: int) -> keras.Model:
    """Input -> base -> head, built under bf16 when `config.bf16`.

    Args:
        bn_momentum: of every BatchNorm layer; `batchnorm_momentum(steps)` for a run.
        num_classes: the head's outputs (the run's class list).
    """
    with dtype_policy("mixed_bfloat16" if config.bf16 else "float32"):
        base = build_base(config.arch, config.weights, config.input_size, config.cut, config.width, bn_momentum, config.bn_scale)
        head = build_head(tuple(base.output.shape[1:]), config.head, tuple(config.head_units), config.dropout, bn_momentum,
                          num_classes=num_classes)
        inputs = keras.Input((config.input_size, config.input_size, 3), name="image")
        model = keras.Model(inputs, head(base(inputs)), name=f"{config.arch}_cifar10")
    return model


def set_freeze(base: keras.Model, spec: str) -> None:
    """Freeze part of the base: 'all', 'none', 'blockN' (train blockN and above) or N (freeze the first N layers).

    Frozen BatchNorm layers run in inference mode (Keras' rule for trainable=False).
    """
    spec = str(spec)
    base.trainable = True
    if spec == "all":
        base.trainable = False
        return
    if spec == "none":
        return
    if spec in BLOCK_NAMES:
        first = BLOCK_NAMES.index(spec) + 1
        for layer in base.layers:
            block = layer.name.split("_")[0]
            layer.trainable = not (block in BLOCK_NAMES and BLOCK_NAMES.index(block) + 1 < first)
        return
    n = int(spec)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= n


def load_model(path: str | Path) -> keras.Model:
    """Load a `.keras` model in safe mode (no Lambda layers or pickled code), with a clear error."""
    path = Path(path)
    if path.suffix != ".keras":
        raise ModelLoadError(f"{shown(path, 100)!r} is not a .keras model file; only .keras files are loaded.")
    if not path.is_file():
        raise ModelLoadError(f"Model file {shown(path, 100)!r} does not exist.")
    # A run's checkpoint names the studio's optimizer classes (cifar_core>Adam, ...) even though it is
    # loaded without them (compile=False): Keras still looks them up, so they must be registered.
    from cifar_core.model import optimizer  # noqa: F401

    # One line of at most ~300 characters, naming the file: Keras' own messages can quote a whole config.
    try:
        safe_h5.check_keras_file(path)
        return keras.models.load_model(path, safe_mode=True, compile=False)
    except safe_h5.UnsafeFileError as err:
        raise ModelLoadError(f"Model file {shown(path, 100)!r} could not be loaded: {clip(err, 190)}.") from err
    except Exception as err:
        raise ModelLoadError(f"Model file {shown(path, 100)!r} could not be loaded ({type(err).__name__}: {clip(err, 160)}).") from err
