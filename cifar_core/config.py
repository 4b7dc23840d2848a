"""TrainConfig: every setting of a training run, validated in one place.

The CLI builds it from flags, the dashboard from its form; both call
`TrainConfig.validate()` (or `from_dict`) and show the per-field messages of
`ConfigError` to the user.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_core.base.errors import StudioError
from cifar_core.base import bounded_json

ARCHS = ("vgg16", "vgg16_bn")
HEADS = ("flatten", "gap")
CUTS = ("block5_pool", "block4_pool", "block3_pool")
OPTIMIZERS = ("rmsprop", "adam", "sgd")
SCHEDULES = ("constant", "cosine", "onecycle", "plateau")
FLIPS = ("random", "alternating", "none")
STRATEGIES = ("default", "mirrored", "multiworker")
BLOCK_NAMES = ("block1", "block2", "block3", "block4", "block5")
# Largest side the pipeline accepts: 224 is VGG16's ImageNet size; beyond it
# the 32x32 CIFAR images only get blurrier and slower.
MAX_INPUT_SIZE = 224


class ConfigError(StudioError, ValueError):
    """Raised with one message per invalid field (`errors` maps field -> message)."""

    exit_code = 2

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


def setting(default: Any, section: str, label: str, help: str, choices: tuple[str, ...] = ()) -> Any:
    """A TrainConfig field with the one description the CLI's --help and the dashboard's form are built from."""
    return field(default=default, metadata={"section": section, "label": label, "help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Settings of one training run. Defaults follow the seed notebook at 32x32.

    Each field's metadata (section, label, help) describes it once for the CLI
    and the form; `parse_config` turns either one's text into a TrainConfig.
    """

    data_dir: str | None = setting(None, "Data", "Data folder", "CIFAR-10 folder (image folders, Kaggle layout or python batches) or an imported dataset's name; default $CIFAR10_DIR, else Keras' download")
    limit: int | None = setting(None, "Data", "Images per class (empty = all)", "use only the first N training images per class (quick runs); only those are decoded")
    classes: tuple[str, ...] | None = setting(None, "Data", "Classes (empty = all)", "train on these class folders of the dataset only, e.g. dog, frog, horse (empty = all of them); the model predicts just these")
    val_fraction: float = setting(0.1, "Data", "Validation fraction", "fraction of the training images held out (stratified) for validation")
    skip_bad: bool = setting(False, "Data", "Skip unreadable files", "skip unreadable image files (their count is reported) instead of failing")
    weights: str = setting("imagenet", "Network", "Base weights", "'imagenet' (Keras download), 'none' (random init, from scratch), a base weights file, or a trained model (.keras) whose base to start from (transfer learning)")
    arch: str = setting("vgg16", "Network", "Architecture", "vgg16 (keras.applications) or vgg16_bn (same layout with BatchNorm, for training from scratch)", ARCHS)
    width: float = setting(1.0, "Network", "Width (vgg16_bn)", "conv width multiplier for vgg16_bn (0.5 = half of VGG16's filters, ~4x less compute); vgg16 is always 1")
    bn_scale: bool = setting(True, "Network", "BatchNorm scale (vgg16_bn)", "BatchNorm layers of the base learn a scale; off fixes it at 1, as airbench94 does")
    input_size: int = setting(32, "Network", "Input size (px)", "side of the network input; 32 is native CIFAR-10, larger sizes upsample (slow on a CPU)")
    cut: str = setting("block5_pool", "Network", "Cut point", "last base layer kept: block5_pool (whole base), block4_pool or block3_pool (the seed's partial network)", CUTS)
    head: str = setting("flatten", "Network", "Head", "flatten (the seed's head) or gap (global average pooling)", HEADS)
    head_units: tuple[int, ...] = setting((512, 256), "Network", "Head layer widths", "widths of the dense layers of the head, e.g. 512, 256")
    dropout: float = setting(0.5, "Network", "Dropout", "dropout after each dense layer of the head")
    # Phase 1 trains the head on a frozen base; phase 2 unfreezes `finetune_freeze`.
    epochs_head: int = setting(15, "Phases", "Epochs, phase 1 (head)", "phase 1: epochs training the head on a frozen base (0 skips it)")
    lr: float = setting(1e-4, "Phases", "Learning rate, phase 1", "phase 1 learning rate")
    epochs_finetune: int = setting(20, "Phases", "Epochs, phase 2 (fine-tune)", "phase 2: epochs fine-tuning after unfreezing (0 skips it)")
    finetune_lr: float = setting(1e-5, "Phases", "Learning rate, phase 2", "phase 2 learning rate (lower, to keep pretrained features)")
    # "block5" = train block5 and above; an integer N = freeze the first N base layers
    # (the seed froze 18, then 14); "none" = train everything.
    finetune_freeze: str = setting("block5", "Phases", "Phase 2 freezing", "phase 2 freezing: blockN (train blockN and up), N (freeze the first N base layers), none, or all")
    measure_start: bool = setting(False, "Phases", "Measure how much of the base to reuse", "before training, short trials on the validation split (a head on the frozen base, head then fine-tuning, from scratch) pick the most accurate, which then trains with these epochs (the 'Your images' preset; needs a trained base as Base weights)")
    optimizer: str = setting("rmsprop", "Optimisation", "Optimizer", "rmsprop (the seed's), adam, or sgd (Nesterov momentum)", OPTIMIZERS)
    momentum: float = setting(0.9, "Optimisation", "Momentum (SGD)", "SGD momentum")
    weight_decay: float = setting(0.0, "Optimisation", "Weight decay", "decoupled weight decay (0 = off)")
    bn_bias_lr: float = setting(1.0, "Optimisation", "BatchNorm bias rate (x)", "learning-rate multiplier for the BatchNorm biases, as airbench94 trains them faster (sgd only; 1 = same rate as every weight)")
    ema: float = setting(0.0, "Optimisation", "Weight EMA momentum", "validate, save and evaluate an exponential moving average of the weights with this momentum, e.g. 0.998 (0 = off); it warms up (momentum min(m, (1+t)/(10+t)) at step t) and is evaluated with BatchNorm statistics measured under it (README ablation)")
    schedule: str = setting("constant", "Optimisation", "LR schedule", "constant; cosine (with optional warmup); onecycle (linear warmup to the rate, then linear decay to 0, as airbench94); plateau (halve on a val_loss plateau)", SCHEDULES)
    warmup_epochs: int = setting(0, "Optimisation", "Warmup epochs", "linear warmup epochs of the cosine and onecycle schedules")
    label_smoothing: float = setting(0.0, "Optimisation", "Label smoothing", "label smoothing of the cross-entropy loss")
    batch_size: int = setting(64, "Optimisation", "Batch size", "global batch size; scale the learning rate with it")
    augment: bool = setting(True, "Augmentation", "Augmentation", "augment training images (the flips and shifts below); off allows the frozen-feature cache")
    flip: str = setting("random", "Augmentation", "Horizontal flips", "random (each image, each epoch), alternating (random in the first epoch, then the other side every epoch, as airbench94) or none", FLIPS)
    translate: int = setting(4, "Augmentation", "Shift (px)", "largest random shift in pixels, reflect-padded (0 = none)")
    tta: bool = setting(False, "Augmentation", "Test-time augmentation", "predict as the mean over the image, its mirror and 1-pixel shifts of both; every page, evaluate and predict do so for this model")
    patience: int = setting(5, "Regularisation and speed", "Early-stopping patience (0 = off)", "EarlyStopping patience in epochs on val_accuracy, restoring the best weights (0 = off)")
    bf16: bool = setting(False, "Regularisation and speed", "bfloat16 mixed precision", "mixed_bfloat16 precision where the hardware computes it natively (a GPU, or a CPU with AVX-512 BF16 or AMX); float32 elsewhere, where bf16 would only be emulated")
    feature_cache: bool = setting(True, "Regularisation and speed", "Cache frozen features", "train the frozen-phase head on cached base features (when augmentation is off)")
    seed: int = setting(42, "Regularisation and speed", "Random seed", "random seed: same seed and data, same run")
    strategy: str = setting("default", "Regularisation and speed", "Distribution strategy", "tf.distribute strategy: default, mirrored (all local GPUs) or multiworker (TF_CONFIG)", STRATEGIES)

    def validate(self) -> "TrainConfig":
        """Return self if every field is valid, else raise ConfigError naming each bad one."""
        wrong_types = {f.name: f"must be {KIND_WORDS[field_kind(f)]}, got {getattr(self, f.name)!r}"
                       for f in dataclasses.fields(self) if not _has_kind(f, getattr(self, f.name))}
        if wrong_types:  # e.g. a stored config edited by hand: the checks below assume each field's type
            raise ConfigError(wrong_types)
        check = _Checks()
        for checks in (_check_choices, _check_weights, _check_network, _check_training, _check_data):
            checks(self, check)
        if check.errors:
            raise ConfigError(check.errors)
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["head_units"] = list(self.head_units)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build and validate a config; unknown keys are an error, not silently dropped."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError({k: "unknown setting" for k in unknown})
        d = dict(d)
        for name in ("head_units", "classes"):
            if isinstance(d.get(name), list):
                d[name] = tuple(d[name])
        return cls(**d).validate()

    @classmethod
    def of_saved_model(cls, d: dict[str, Any]) -> "TrainConfig":
        """A trained model's stored settings, for evaluating or calibrating it: the saved model holds its
        weights, so the base it started from (which may be gone) and how that start was measured do not matter."""
        return cls.from_dict({**d, "weights": "none", "measure_start": False})

    def resolved_data_dir(self) -> str | None:
        """The data folder to use: the config's, else $CIFAR10_DIR, else None (Keras download)."""
        from cifar_core.data.locate import data_dir

        return data_dir(self.data_dir)


class _Checks:
    """The checks' verdicts: the first message for each bad field, in the order checked (ConfigError lists them so)."""

    def __init__(self):
        self.errors: dict[str, str] = {}

    def __call__(self, name: str, ok: bool, message: str) -> None:
        if not ok and name not in self.errors:
            self.errors[name] = message


def _check_choices(config: TrainConfig, check: _Checks) -> None:
    """Fields with a list of choices hold one of them; switches are on or off."""
    for f in dataclasses.fields(config):
        choices = f.metadata["choices"]
        if choices:
            value = getattr(config, f.name)
            check(f.name, value in choices, f"unknown {f.name} {value!r}; choose one of {', '.join(choices)}")
        elif f.type == "bool":
            check(f.name, isinstance(getattr(config, f.name), bool), f"must be on or off, got {getattr(config, f.name)!r}")


def _check_weights(config: TrainConfig, check: _Checks) -> None:
    """The base weights exist and suit the architecture; measuring the start needs a trained base."""
    weights_ok = config.weights in ("imagenet", "none") or Path(config.weights).is_file()
    if config.measure_start:
        check("weights", weights_ok, f"{config.weights!r} does not exist: measuring how much of a trained base to reuse needs "
              "that model (the 'Your images' preset starts from the shipped model, artifacts/default/model.keras; "
              "restore it from the project's repository, or name another trained model)")
        check("measure_start", config.weights != "none", "needs a trained base to measure: set Base weights to a trained "
              "model (.keras), a weights file or 'imagenet', or turn measuring off")
        check("measure_start", config.strategy == "default", "its trials run on one machine: use the default strategy")
    check("weights", weights_ok, f"{config.weights!r} is neither 'imagenet', 'none' nor an existing weights file")
    if weights_ok and config.weights.endswith(".keras"):
        check("weights", (problem := _base_mismatch(config)) is None, problem or "")
    if config.arch == "vgg16_bn":
        check("weights", config.weights != "imagenet", "vgg16_bn has no ImageNet weights in keras.applications; use 'none' "
              "(train from scratch) or a weights file saved from a vgg16_bn run")


def _check_network(config: TrainConfig, check: _Checks) -> None:
    """The base's width and input size, and the head."""
    check("width", isinstance(config.width, (int, float)) and 0.125 <= config.width <= 2.0 and (config.arch == "vgg16_bn" or config.width == 1.0),
          f"must be in [0.125, 2] and may differ from 1 only for vgg16_bn, got {config.width!r}")
    check("input_size", isinstance(config.input_size, int) and 32 <= config.input_size <= MAX_INPUT_SIZE,
          f"must be a whole number from 32 to {MAX_INPUT_SIZE}, got {config.input_size!r}")
    check("head_units", len(config.head_units) > 0 and all(isinstance(u, int) and 1 <= u <= 8192 for u in config.head_units),
          f"must be one or more layer widths from 1 to 8192, got {config.head_units!r}")
    check("dropout", _number(config.dropout) and 0.0 <= config.dropout < 1.0, f"must be in [0, 1), got {config.dropout!r}")


def _check_training(config: TrainConfig, check: _Checks) -> None:
    """The phases, the optimiser and its schedule, augmentation and early stopping."""
    for name in ("epochs_head", "epochs_finetune"):
        value = getattr(config, name)
        check(name, isinstance(value, int) and 0 <= value <= 1000, f"must be a whole number from 0 to 1000, got {value!r}")
    if "epochs_head" not in check.errors and "epochs_finetune" not in check.errors:
        check("epochs_head", config.epochs_head + config.epochs_finetune > 0, "both phases have 0 epochs: nothing to train")
    for name in ("lr", "finetune_lr"):
        value = getattr(config, name)
        check(name, isinstance(value, (int, float)) and 0 < value <= 10, f"must be a number in (0, 10], got {value!r}")
    check("finetune_freeze", _valid_freeze(config.finetune_freeze), "must be 'none', 'all', a block name (block1..block5) or a layer count >= 0")
    check("momentum", _number(config.momentum) and 0.0 <= config.momentum < 1.0, f"must be in [0, 1), got {config.momentum!r}")
    check("weight_decay", _number(config.weight_decay) and 0.0 <= config.weight_decay < 1.0, f"must be in [0, 1), got {config.weight_decay!r}")
    check("bn_bias_lr", _number(config.bn_bias_lr) and 0 < config.bn_bias_lr <= 1000, f"must be a number in (0, 1000], got {config.bn_bias_lr!r}")
    check("bn_bias_lr", config.bn_bias_lr == 1 or config.optimizer == "sgd", "applies to the sgd optimizer only; leave it at 1 for rmsprop or adam")
    check("ema", _number(config.ema) and (config.ema == 0 or 0.5 <= config.ema < 1), f"must be 0 (off) or in [0.5, 1), e.g. 0.998, got {config.ema!r}")
    check("translate", _whole(config.translate) and 0 <= config.translate <= 8, f"must be a whole number of pixels from 0 to 8, got {config.translate!r}")
    check("warmup_epochs", isinstance(config.warmup_epochs, int) and config.warmup_epochs >= 0, f"must be a whole number >= 0, got {config.warmup_epochs!r}")
    check("label_smoothing", _number(config.label_smoothing) and 0.0 <= config.label_smoothing < 1.0, f"must be in [0, 1), got {config.label_smoothing!r}")
    check("batch_size", isinstance(config.batch_size, int) and 1 <= config.batch_size <= 4096, f"must be a whole number from 1 to 4096, got {config.batch_size!r}")
    check("patience", isinstance(config.patience, int) and config.patience >= 0, f"must be a whole number >= 0, got {config.patience!r}")


def _check_data(config: TrainConfig, check: _Checks) -> None:
    """The data folder and what is taken from it, and the seed."""
    check("val_fraction", _number(config.val_fraction) and 0.0 < config.val_fraction < 0.5, f"must be in (0, 0.5), got {config.val_fraction!r}")
    check("classes", config.classes is None or (len(config.classes) >= 2 and len(set(config.classes)) == len(config.classes)
                                              and all(isinstance(c, str) and c.strip() == c and c for c in config.classes)),
          f"must be empty or two or more different class names, got {', '.join(map(str, config.classes or ()))!r}")
    check("limit", config.limit is None or (isinstance(config.limit, int) and config.limit >= 2), f"must be empty or a whole number >= 2, got {config.limit!r}")
    # numpy's (hence Keras') seeds are 32-bit: a larger one fails only when training starts.
    check("seed", isinstance(config.seed, int) and 0 <= config.seed < 2**32, f"must be a whole number from 0 to {2**32 - 1}, got {config.seed!r}")
    if config.data_dir is not None:
        check("data_dir", Path(config.resolved_data_dir()).is_dir(),
              f"data folder {config.data_dir!r} does not exist, and no imported dataset has that name (`python -m cifar_core data list`)")


def _base_mismatch(config: "TrainConfig") -> str | None:
    """Why the trained model `config.weights` cannot lend its base to `config`, from the config.json beside
    it (other architecture or width, or a shallower cut), or None. Without that file, loading the weights checks."""
    try:
        theirs = bounded_json.read(Path(config.weights).parent / "config.json")
    except (OSError, ValueError):
        return None
    if not isinstance(theirs, dict):
        return None
    differ = [f"{name} {theirs.get(name)} (this run: {getattr(config, name)})" for name in ("arch", "width")
              if name in theirs and theirs[name] != getattr(config, name)]
    if theirs.get("cut") in CUTS and config.cut in CUTS and CUTS.index(theirs["cut"]) > CUTS.index(config.cut):
        differ.append(f"cut {theirs['cut']} (this run: {config.cut}, deeper)")
    if not differ:
        return None
    return f"that model's base has {', '.join(differ)}; use the same architecture and width, and the same or an earlier cut"


def _number(value: Any) -> bool:
    """True for real numbers; from_dict may carry strings or None from a form or an edited config.json."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_freeze(spec: str) -> bool:
    spec = str(spec)
    return spec in ("none", "all") or spec in BLOCK_NAMES or re.fullmatch(r"[0-9]+", spec) is not None


# ---------------------------------------------------------------- text -> TrainConfig

# ASCII only: str.isdigit() and int() also accept other scripts' digits ('²', '٣'),
# which then fail later or mean something the user did not type.
WHOLE_RE = re.compile(r"[+-]?[0-9]+")
NUMBER_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
TRUE_WORDS, FALSE_WORDS = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def parse_number(text: Any, kind: type) -> int | float:
    """`text` as an int or a float, written with ASCII digits; ValueError in words otherwise."""
    raw = str(text).strip()
    if kind is int and WHOLE_RE.fullmatch(raw):
        return int(raw)
    if kind is float and NUMBER_RE.fullmatch(raw):
        return float(raw)
    raise ValueError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}")


def stored_config_problem(d: dict[str, Any]) -> str | None:
    """Why a stored config (a run's row or config.json) cannot be a TrainConfig's values, in words; None if its
    known settings have the right types. Files, folders and ranges are checked when the config is used."""
    by_name = {f.name: f for f in dataclasses.fields(TrainConfig)}
    wrong = [f"{name}: must be {KIND_WORDS[field_kind(by_name[name])]}, got {value!r}"
             for name, value in d.items() if name in by_name and not _has_kind(by_name[name], _typed(by_name[name], value))]
    return "; ".join(wrong) or None


def _typed(f: dataclasses.Field, value: Any) -> Any:
    """JSON's lists for the tuple fields, as from_dict converts them."""
    return tuple(value) if field_kind(f) in ("ints", "words") and isinstance(value, list) else value


KIND_WORDS = {"bool": "on or off", "int": "a whole number", "float": "a number", "str": "text",
              "ints": "a list of whole numbers", "words": "a list of names"}


def _has_kind(f: dataclasses.Field, value: Any) -> bool:
    """Whether `value` has the Python type of field `f` (None where the field is optional)."""
    if value is None:
        return optional(f)
    kind = field_kind(f)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    item = int if kind == "ints" else str
    return isinstance(value, (tuple, list)) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)


def field_kind(f: dataclasses.Field) -> str:
    """'bool', 'int', 'float', 'ints' (a list of whole numbers), 'words' (a list of names) or 'str', from the field's annotation."""
    kind = str(f.type).replace(" | None", "")
    return {"tuple[int, ...]": "ints", "tuple[str, ...]": "words"}.get(kind, kind)


def optional(f: dataclasses.Field) -> bool:
    """Whether the field may be empty (None)."""
    return "None" in str(f.type)


def _parse_value(f: dataclasses.Field, raw: Any) -> Any:
    """One field's value from text (or an already typed value); ValueError says what is wrong, in words."""
    kind = field_kind(f)
    if isinstance(raw, str):
        raw = raw.strip()
        if raw == "":
            if optional(f):
                return None
            raise ValueError("needs a value")
    if kind == "ints":
        items = re.split(r"[,\s]+", raw) if isinstance(raw, str) else list(raw)
        items = [str(i).strip() for i in items if str(i).strip()]
        bad = [i for i in items if not WHOLE_RE.fullmatch(i)]
        if bad or not items:
            raise ValueError(f"must be whole numbers separated by commas, e.g. 512, 256; {', '.join(repr(b) for b in bad) or 'nothing'} is not")
        return tuple(int(i) for i in items)
    if kind == "words":
        items = raw.split(",") if isinstance(raw, str) else [str(i) for i in raw]
        names = tuple(n.strip() for item in items for n in item.split(",") if n.strip())
        return names or None
    if not isinstance(raw, str):
        return raw  # typed already (a form's toggle or number box, or config.json)
    if kind == "bool":
        if raw.lower() in TRUE_WORDS + FALSE_WORDS:
            return raw.lower() in TRUE_WORDS
        raise ValueError(f"must be on or off (true/false), got {raw!r}")
    try:
        if kind == "int":
            return parse_number(raw, int)
        if kind == "float":
            return parse_number(raw, float)
    except ValueError:
        example = "a whole number written with the digits 0-9" if kind == "int" else "a number such as 0.1 or 1e-4"
        raise ValueError(f"must be {example}, got {raw!r}") from None
    return raw


def parse_config(values: dict[str, Any], base: dict[str, Any] | None = None) -> TrainConfig:
    """A validated TrainConfig from text (CLI flags, form boxes) over `base` values (e.g. a run's config).

    Values may be text or already typed; None (or a missing key) keeps the base or
    default value, an empty text clears an optional field. ConfigError names every
    bad field at once, in words.
    """
    merged: dict[str, Any] = dict(base or {})
    errors: dict[str, str] = {}
    by_name = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - set(by_name))
    errors.update({name: "unknown setting" for name in unknown})
    for name, raw in values.items():
        if name in by_name and raw is not None:
            try:
                merged[name] = _parse_value(by_name[name], raw)
            except ValueError as err:
                errors[name] = str(err)
    for name in errors:
        merged.pop(name, None)
    try:
        config = TrainConfig.from_dict(merged)
    except ConfigError as err:
        raise ConfigError({**err.errors, **errors}) from None
    if errors:
        raise ConfigError(errors)
    return config


