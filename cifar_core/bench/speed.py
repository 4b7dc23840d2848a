"""The speed benchmark: the project's recipe against the seed's, side by side on this machine.

`run_bench` measures, in one process (plus one child process for peak memory):
  head_epoch_speedup         one frozen-phase head epoch on cached features vs the seed's
                             way (the frozen base run forward on every image every epoch)
  finetune_throughput_ratio  images/s of the project's fine-tuning path (tf.data, bf16 where
                             the CPU has it) vs plain fp32 `model.fit` on NumPy arrays, plus
                             validation accuracy after the same steps from the same checkpoint
  predict_latency_ms_p50/p90 one uploaded image, bytes -> classification, after warm-up
                             (and with test-time augmentation: 6 views in one batch)
  accuracy_at_minutes        from a finished run's per-epoch records: its validation accuracy
                             after 10, 20, 40 and 60 minutes of wall time (the shipped model's run)
  eval_10k_seconds           test-split evaluation through `evaluate.evaluate_model`
  cached_load_seconds        the second load of the dataset (served by the decode cache)
  peak_rss_mb                full fine-tuning in a fresh process, from ru_maxrss

Ratios matter more than absolute times: the machines are shared and noisy. Models use
random-init weights (ImageNet weights cannot be downloaded here); speed does not depend
on the weight values. Without a data folder the images are synthetic.

Why one module of ~500 lines: each metric above is one measuring function, and the
targets, the table and the JSON line that report them are kept beside them; the
ablation, transfer, similar-images and UI benchmarks live in their own modules.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.model import frozen_features as features
from cifar_core.data import loader as data_lib
from cifar_core.base.atomic_io import atomic_save_model
from cifar_core.config import TrainConfig
from cifar_core.data.loader import load_dataset, make_dataset, preprocess
from cifar_core.predict.evaluate import evaluate_model
from cifar_core.model.forward import predict_probs
from cifar_core.predict.inference import Classifier, load_image
from cifar_core.model.vgg import build_model, load_model, set_freeze
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.training.phases import Phase, compile_phase

Echo = Callable[[str], None]

# The checkpoint's head learns at 10x the seed's head rate: a brief phase, not a tuned one.
PRETRAIN_LR = 1e-3
TARGETS = {
    "head_epoch_speedup": (">=", 50.0),
    "finetune_throughput_ratio": (">=", 1.4),
    "finetune_val_accuracy_diff_points": ("<=", 1.0),
    "predict_latency_ms_p50": ("<=", 10.0),
    "predict_latency_tta_ms_p50": ("<=", 10.0),
    "eval_10k_seconds": ("<=", 30.0),
    "cached_load_seconds": ("<=", 2.0),
    "peak_rss_mb": ("<=", 4000.0),
}


@dataclass
class BenchSizes:
    """How much work each measurement does; `quick()` and `full()` are the CLI's two settings."""

    synthetic_train: int = 50_000  # synthetic dataset size when no data folder is given
    synthetic_test: int = 10_000
    head_images: int = 45_000  # images in the head-epoch comparison (all of the train split)
    head_batch: int = 64  # TrainConfig's default batch size, the seed's
    finetune_batch: int = 128
    pretrain_images: int = 20_000  # the checkpoint both fine-tuning paths start from: a head trained on
    pretrain_epochs: int = 10  # cached features of this many images for this many epochs
    finetune_steps: int = 40  # steps each path takes from it (the first, tracing, is not timed)
    val_images: int = 5_000
    latency_calls: int = 200
    eval_images: int = 10_000
    rss_steps: int = 20

    @classmethod
    def quick(cls) -> "BenchSizes":
        return cls(head_images=1_280, pretrain_images=2_560, finetune_steps=6, val_images=1_000,
                   latency_calls=50, eval_images=2_000, rss_steps=4)

    @classmethod
    def full(cls) -> "BenchSizes":
        return cls()


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX), where mixed bf16 pays off."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_bench(data_dir: str | None, quick: bool, echo: Echo | None = None, *, sizes: BenchSizes | None = None) -> dict:
    """Run every measurement and return one flat dict of results (see the module docstring)."""
    sizes = sizes or (BenchSizes.quick() if quick else BenchSizes.full())
    say = echo or (lambda _msg: None)
    bf16 = cpu_has_bf16()
    result: dict = {
        "quick": quick,
        "data": f"real: {data_dir}" if data_dir else "synthetic (no data folder given)",
        "weights": "random init (weights='none'): ImageNet weights cannot be downloaded here; speed does not depend on weight values",
        "cpus": os.cpu_count(),
        "cpu_bf16": bf16,
        "load_average_at_start": round(os.getloadavg()[0], 2),
        "sizes": asdict(sizes),
    }
    with tempfile.TemporaryDirectory(prefix="cifar-bench-") as tmp:
        work = Path(tmp)
        cache = None
        if not data_dir:
            data_dir, cache = str(write_synthetic(work / "data", sizes.synthetic_train, sizes.synthetic_test)), work / "cache"
        timer = _SectionTimer(say)
        with timer("loading data"):
            data, result["first_load_seconds"], result["cached_load_seconds"] = _timed_loads(data_dir, cache)
        splits = data_lib.make_splits(data, val_fraction=0.1, seed=0)
        with timer("head epoch, cached features vs frozen base on every image"):
            result.update(bench_head_epoch(splits, sizes))
        with timer("fine-tuning throughput and accuracy"):
            finetune, model_path = bench_finetune(splits, sizes, bf16, work)
            result.update(finetune)
        with timer("single-image latency"):
            result.update(bench_latency(model_path, data.x_test, sizes.latency_calls))
        with timer("test-split evaluation"):
            result.update(bench_eval(model_path, data.x_test, data.y_test, sizes.eval_images, data.class_names))
        with timer("peak memory of fine-tuning (child process)"):
            result["peak_rss_mb"] = bench_peak_rss(data_dir, cache, sizes, bf16)
        result["section_seconds"] = timer.seconds
    result["accuracy_at_minutes"] = accuracy_at_minutes(PROJECT_ROOT / "artifacts" / "default")
    result["targets_met"] = {k: _meets(result.get(k), *t) for k, t in TARGETS.items()}
    if max(result["load_average_at_start"], os.getloadavg()[0]) > (os.cpu_count() or 1):
        result["warning"] = "other processes loaded the CPUs during this run: re-measure on an idle machine"
    say(format_table(result))
    return result


class _SectionTimer:
    """`with timer(name):` announces a section and records its wall time."""
    def __init__(self, say: Echo):
        self.say = say
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.say(f"bench: {name}")
        t0 = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - t0, 1)


# ---------------------------------------------------------------- data


def write_synthetic(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """A learnable synthetic CIFAR-10 (class colour and stripes plus noise) in the python-batches layout,
    which holds CIFAR-10's ten classes."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (len(CLASS_NAMES), 3)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32]
    stripes = np.stack([((xx if c % 2 else yy) // (2 + c % 4)) % 2 for c in range(len(CLASS_NAMES))]).astype(np.float32)
    counts = [n_train // 5 + (i < n_train % 5) for i in range(5)] + [n_test]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, n in zip(names, counts):
        y = rng.integers(0, len(CLASS_NAMES), n)
        img = colours[y][:, None, None, :] * (0.6 + 0.4 * stripes[y][..., None]) + rng.normal(0, 12, (n, 32, 32, 3)).astype(np.float32)
        x = np.clip(img, 0, 255).astype(np.uint8)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(n, -1), b"labels": y.tolist()}, f)
    return root


def _timed_loads(data_dir: str, cache: Path | None) -> tuple[data_lib.ImageData, float, float]:

    t0 = time.perf_counter()
    load_dataset(data_dir, cache_dir=cache)
    t1 = time.perf_counter()
    data = load_dataset(data_dir, cache_dir=cache)
    t2 = time.perf_counter()
    return data, round(t1 - t0, 3), round(t2 - t1, 3)


# ---------------------------------------------------------------- training


class StepClock(keras.callbacks.Callback):
    """Times the steps after the first (which includes tracing), in wall and in CPU seconds.

    CPU time (all threads of this process) is the steadier figure when other processes
    compete for the cores; wall time is what a user waits.
    """

    def __init__(self):
        super().__init__()
        self.stamps: list[tuple[float, float]] = []

    def on_train_batch_end(self, batch, logs=None):
        self.stamps.append((time.perf_counter(), time.process_time()))

    def per_step(self) -> tuple[float, float]:
        """(wall, cpu) seconds per step."""
        if len(self.stamps) < 2:
            raise ValueError("need at least 2 steps to time steady-state steps")
        (w0, c0), (w1, c1) = self.stamps[0], self.stamps[-1]
        return (w1 - w0) / (len(self.stamps) - 1), (c1 - c0) / (len(self.stamps) - 1)


def _preprocessed(x: np.ndarray) -> np.ndarray:
    return np.asarray(preprocess(x), dtype=np.float32)


def bench_head_epoch(splits: data_lib.Splits, sizes: BenchSizes) -> dict:
    """Seed: the full model with a frozen base fit on images. Project: the head fit on cached features."""
    config = TrainConfig(weights="none", batch_size=sizes.head_batch)
    keras.utils.set_random_seed(0)
    classes = len(splits.class_names)
    model = build_model(config, num_classes=classes)
    base, head = model.get_layer("base"), model.get_layer("head")
    set_freeze(base, "all")
    # A random subset: the splits are ordered by class folder.
    pick = np.random.default_rng(0).permutation(len(splits.x_train))[: sizes.head_images]
    x, y = splits.x_train[pick], data_lib.one_hot(splits.y_train[pick], classes)
    steps = -(-len(x) // config.batch_size)
    phase = Phase("head", 1, config.lr, "all")

    compile_phase(model, config, phase, steps)
    seed_clock = StepClock()
    model.fit(_preprocessed(x), y, batch_size=config.batch_size, epochs=1, shuffle=True, callbacks=[seed_clock], verbose=0)

    t0 = time.perf_counter()
    feats = features.compute_base_features(base, x, input_size=config.input_size)
    extract = time.perf_counter() - t0
    compile_phase(head, config, phase, steps)
    head_clock = StepClock()
    head.fit(feats, y, batch_size=config.batch_size, epochs=1, shuffle=True, callbacks=[head_clock], verbose=0)

    (seed_step, seed_cpu), (cached_step, cached_cpu) = seed_clock.per_step(), head_clock.per_step()
    seed_epoch, cached_epoch = seed_step * steps, cached_step * steps
    epochs = config.epochs_head
    return {
        "head_epoch_speedup": round(seed_epoch / cached_epoch, 1),
        "head_epoch_speedup_cpu": round(seed_cpu / cached_cpu, 1),
        "head_epoch_seconds_seed": round(seed_epoch, 3),
        "head_epoch_seconds_cached": round(cached_epoch, 4),
        "feature_extract_seconds": round(extract, 2),
        # The whole head phase at the default epoch count, counting the one-off feature pass.
        "head_phase_epochs": epochs,
        "head_phase_speedup": round(epochs * seed_epoch / (extract + epochs * cached_epoch), 1),
    }


def finetune_config(bf16: bool, batch_size: int) -> TrainConfig:
    """The seed's model and optimiser (VGG16, Flatten head, RMSprop), fine-tuned with every layer trainable."""
    return TrainConfig(weights="none", finetune_freeze="none", batch_size=batch_size, augment=False, bf16=bf16)


def _fit_steps(model: keras.Model, config: TrainConfig, x: np.ndarray, y: np.ndarray, project_path: bool) -> tuple[float, float]:
    """One pass over `x` (len(x) / batch steps); returns (images per wall second, per CPU second) after the first step."""
    steps = len(x) // config.batch_size
    compile_phase(model, config, Phase("finetune", 1, config.finetune_lr, "none"), steps)
    clock = StepClock()
    if project_path:
        ds = make_dataset(x, y, config.batch_size, training=True, augment=config.augment, seed=config.seed,
                          num_classes=int(model.output_shape[-1]))
        model.fit(ds, epochs=1, shuffle=False, callbacks=[clock], verbose=0)
    else:
        model.fit(_preprocessed(x), data_lib.one_hot(y, int(model.output_shape[-1])), batch_size=config.batch_size, epochs=1, shuffle=True, callbacks=[clock], verbose=0)
    wall, cpu = clock.per_step()
    return config.batch_size / wall, config.batch_size / cpu


def bench_finetune(splits: data_lib.Splits, sizes: BenchSizes, bf16: bool, work: Path) -> tuple[dict, Path]:
    """Both paths take the same steps over the same images from one briefly trained checkpoint.

    A few steps from random init only compare chance-level models. So, as in the
    project's two phases, the head is first trained on cached features of the frozen
    random-init base; both paths then fine-tune the whole model from that checkpoint
    at the fine-tuning learning rate. Returns the results and the project-path model
    saved as a .keras file.
    """
    bs = sizes.finetune_batch
    project_cfg, baseline_cfg = finetune_config(bf16, bs), finetune_config(False, bs)
    keras.utils.set_random_seed(0)
    classes = len(splits.class_names)
    baseline = build_model(baseline_cfg, num_classes=classes)
    base, head = baseline.get_layer("base"), baseline.get_layer("head")
    rng = np.random.default_rng(0)
    pre = rng.choice(len(splits.x_train), min(len(splits.x_train), sizes.pretrain_images), replace=False)
    set_freeze(base, "all")
    compile_phase(head, baseline_cfg, Phase("head", sizes.pretrain_epochs, PRETRAIN_LR, "all"), -(-len(pre) // bs))
    feats = features.compute_base_features(base, splits.x_train[pre], input_size=baseline_cfg.input_size)
    head.fit(feats, data_lib.one_hot(splits.y_train[pre], classes), batch_size=bs, epochs=sizes.pretrain_epochs, shuffle=True, verbose=0)
    set_freeze(base, "none")
    project = build_model(project_cfg, num_classes=classes)
    set_freeze(project.get_layer("base"), "none")
    project.set_weights(baseline.get_weights())

    val = rng.permutation(len(splits.x_val))[: sizes.val_images]  # all classes, not the first folders
    x_val, y_val = splits.x_val[val], splits.y_val[val]
    start_acc = _accuracy(baseline, x_val, y_val)
    idx = rng.choice(len(splits.x_train), min(len(splits.x_train), sizes.finetune_steps * bs), replace=False)
    x, y = splits.x_train[idx], splits.y_train[idx]
    project_ips, project_ipcpu = _fit_steps(project, project_cfg, x, y, project_path=True)
    baseline_ips, baseline_ipcpu = _fit_steps(baseline, baseline_cfg, x, y, project_path=False)
    project_acc, baseline_acc = _accuracy(project, x_val, y_val), _accuracy(baseline, x_val, y_val)

    model_path = work / "project.keras"
    atomic_save_model(project, model_path)
    return {
        "finetune_throughput_ratio": round(project_ips / baseline_ips, 2),
        "finetune_throughput_ratio_cpu": round(project_ipcpu / baseline_ipcpu, 2),
        "finetune_images_per_s_project": round(project_ips, 1),
        "finetune_images_per_s_baseline": round(baseline_ips, 1),
        "finetune_val_accuracy_checkpoint": round(start_acc, 4),
        "finetune_val_accuracy_project": round(project_acc, 4),
        "finetune_val_accuracy_baseline": round(baseline_acc, 4),
        "finetune_val_accuracy_diff_points": round(abs(project_acc - baseline_acc) * 100, 2),
        "finetune_setting": (
            f"VGG16 (random init), Flatten head, all layers trainable, RMSprop lr {project_cfg.finetune_lr}, batch {bs}, "
            f"no augmentation on either side. Checkpoint: the head trained {sizes.pretrain_epochs} epochs on cached "
            f"features of {len(pre)} images; from it both paths take the same {sizes.finetune_steps} steps over the "
            f"same images. Project path: {'bf16' if bf16 else 'fp32 (no native bf16 on this CPU)'} through tf.data; "
            f"baseline: fp32 model.fit on NumPy arrays. Accuracy on {len(x_val)} validation images"
        ),
    }, model_path


def _accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict_probs(model, x, input_size=32).argmax(1) == y).mean())


# ---------------------------------------------------------------- inference


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _timed_calls(call: Callable[[int], object], n: int, warmup: int = 5) -> dict[str, float]:
    """Wall p50/p90 and CPU p50 in milliseconds of `call(i)` for i in range(n), after `warmup` untimed calls."""
    for i in range(warmup):
        call(i)
    wall, cpu = [], []
    for i in range(n):
        w0, c0 = time.perf_counter(), time.process_time()
        call(i)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    ms = lambda a, q: round(float(np.percentile(np.asarray(a) * 1000, q)), 2)  # noqa: E731
    return {"p50": ms(wall, 50), "p90": ms(wall, 90), "cpu_p50": ms(cpu, 50)}


def bench_latency(model_path: Path, images: np.ndarray, calls: int) -> dict:
    """One uploaded PNG, bytes -> classification, through `Classifier.classify_bytes`.

    For comparison, the same decode plus the model as a plain (eager) `model(x)` call and
    as an unfrozen tf.function (the Classifier before its function was frozen).
    """
    uploads = [_png_bytes(images[i % len(images)]) for i in range(max(calls, 8))]
    classifier = Classifier(model_path, tta=False)  # one view; the TTA figure is measured below
    model = classifier.model
    traced = tf.function(lambda x: model(preprocess(x), training=False))
    project = _timed_calls(lambda i: classifier.classify_bytes([("upload.png", uploads[i])]), calls)
    with_tta = Classifier(model_path, tta=True)  # the 6 views of one image go through the model as one batch
    tta = _timed_calls(lambda i: with_tta.classify_bytes([("upload.png", uploads[i])]), calls)
    plain = _timed_calls(lambda i: np.asarray(model(preprocess(load_image(uploads[i])[None]), training=False)), max(8, calls // 4))
    unfrozen = _timed_calls(lambda i: np.asarray(traced(tf.constant(load_image(uploads[i])[None]))), max(8, calls // 2))
    return {
        "predict_latency_ms_p50": project["p50"],
        "predict_latency_ms_p90": project["p90"],
        "predict_latency_cpu_ms_p50": project["cpu_p50"],
        "predict_latency_tta_ms_p50": tta["p50"],
        "predict_latency_plain_model_call_ms_p50": plain["p50"],
        "predict_latency_unfrozen_tf_function_ms_p50": unfrozen["p50"],
    }


def accuracy_at_minutes(run_dir: Path, minutes: tuple[int, ...] = (10, 20, 40, 60)) -> dict:
    """A finished run's best validation accuracy by each mark of wall time since it started training,
    from its history.csv (epoch end times), beside its final test accuracy."""
    import pandas as pd

    try:
        history = pd.read_csv(run_dir / "history.csv")
        evaluation = json.loads((run_dir / "evaluation.json").read_text())
    except (OSError, ValueError) as err:
        return {"error": f"no finished run in {run_dir}: {err}"}
    elapsed_min = (history["ts"] - (history["ts"].iloc[0] - history["seconds"].iloc[0])) / 60
    marks = {f"{m}": float(history.loc[elapsed_min <= m, "val_accuracy"].max()) if (elapsed_min <= m).any() else None
             for m in minutes}
    return {"run": str(run_dir.name), "val_accuracy_by_minute": marks, "training_minutes": round(float(elapsed_min.iloc[-1]), 1),
            "test_accuracy": evaluation.get("accuracy"), "previous_recipe": "85.69% test at 58.7 minutes (the earlier shipped model)"}


def bench_eval(model_path: Path, x: np.ndarray, y: np.ndarray, n: int, class_names: tuple[str, ...]) -> dict:
    """`evaluate_model` on the first `n` test images, scaled to 10,000 when fewer are used."""
    n = min(n, len(x))
    model = load_model(model_path)
    # warm-up: tracing is not evaluation time
    evaluate_model(model, x[:64], y[:64], input_size=32, class_names=class_names)
    w0, c0 = time.perf_counter(), time.process_time()
    evaluate_model(model, x[:n], y[:n], input_size=32, class_names=class_names)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"eval_10k_seconds": round(wall * 10_000 / n, 2), "eval_10k_cpu_seconds": round(cpu * 10_000 / n, 2), "eval_images_measured": n}


# ---------------------------------------------------------------- memory


def bench_peak_rss(data_dir: str, cache: Path | None, sizes: BenchSizes, bf16: bool) -> float:
    """Peak RSS (MB) of a fresh process that loads the data and runs full fine-tuning steps."""
    args = {"data_dir": data_dir, "cache": str(cache) if cache else None, "steps": sizes.rss_steps,
            "batch": sizes.finetune_batch, "bf16": bf16}
    code = "import json, sys; from cifar_core.bench.speed import rss_child; rss_child(json.loads(sys.argv[1]))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory child process failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def rss_child(args: dict) -> None:
    """Run in the child: train.py's fine-tuning setup (all data loaded, augmentation on), then print peak RSS."""
    data = load_dataset(args["data_dir"], cache_dir=Path(args["cache"]) if args["cache"] else None)
    splits = data_lib.make_splits(data, val_fraction=0.1, seed=0)
    config = finetune_config(args["bf16"], args["batch"])
    model = build_model(config, num_classes=len(splits.class_names))
    set_freeze(model.get_layer("base"), "none")
    compile_phase(model, config, Phase("finetune", 1, config.finetune_lr, "none"), args["steps"])
    ds = make_dataset(splits.x_train, splits.y_train, config.batch_size, training=True, augment=True,
                      num_classes=len(splits.class_names))
    model.fit(ds, epochs=1, steps_per_epoch=args["steps"], shuffle=False, verbose=0)
    print(json.dumps({"peak_rss_mb": round(peak_rss_kib() / 1024, 1)}))


def peak_rss_kib() -> int:
    """This process's own peak RSS. VmHWM, not ru_maxrss: Linux carries the parent's peak
    into ru_maxrss across a vfork+exec (Python's subprocess), so a child started from the
    big benchmark process would report the parent's peak, not its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


# ---------------------------------------------------------------- report


def _meets(value: object, op: str, target: float) -> bool | None:
    if not isinstance(value, (int, float)):
        return None
    return value >= target if op == ">=" else value <= target


def format_table(result: dict) -> str:
    """A readable table of the headline figures with their targets."""
    lines = [f"{'metric':<36} {'value':>10}  target", "-" * 60]
    for key, (op, target) in TARGETS.items():
        met = result.get("targets_met", {}).get(key)
        mark = "" if met is None else ("ok" if met else "MISSED")
        lines.append(f"{key:<36} {result.get(key, '-')!s:>10}  {op} {target:g}  {mark}")
    for key in ("predict_latency_ms_p90", "predict_latency_plain_model_call_ms_p50", "predict_latency_unfrozen_tf_function_ms_p50",
                "finetune_images_per_s_project", "finetune_images_per_s_baseline", "finetune_val_accuracy_project",
                "finetune_val_accuracy_baseline", "head_epoch_seconds_seed", "head_epoch_seconds_cached",
                "feature_extract_seconds", "head_epoch_speedup_cpu", "finetune_throughput_ratio_cpu", "eval_10k_cpu_seconds"):
        lines.append(f"{key:<36} {result.get(key, '-')!s:>10}")
    lines.append(f"data: {result['data']}; weights: random init; cpus {result['cpus']}, "
                 f"load average at start {result['load_average_at_start']}, quick={result['quick']}")
    if "warning" in result:
        lines.append(f"WARNING: {result['warning']}")
    return "\n".join(lines)
