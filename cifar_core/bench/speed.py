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

Here: the run, the data, the inference measurements, and the targets and table that report
them all. The training measurements (head epoch, fine-tuning, peak memory) are in
training_speed.py, the sizes of every measurement in speed_settings.py; the transfer,
similar-images and UI benchmarks live in their own modules.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf
from PIL import Image

from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.base import bounded_json
from cifar_core.base.hardware import native_bf16
from cifar_core.bench.speed_settings import BenchSizes
from cifar_core.bench.training_speed import bench_finetune, bench_head_epoch, bench_peak_rss
from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.images import ImageData
from cifar_core.data.loader import load_dataset
from cifar_core.data.pipeline import preprocess
from cifar_core.data.splits import make_splits
from cifar_core.model.vgg import load_model
from cifar_core.predict.evaluate import evaluate_model
from cifar_core.predict.inference import Classifier, load_image

Echo = Callable[[str], None]

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


def run_bench(data_dir: str | None, quick: bool, echo: Echo | None = None, *, sizes: BenchSizes | None = None) -> dict:
    """Run every measurement and return one flat dict of results (see the module docstring)."""
    sizes = sizes or (BenchSizes.quick() if quick else BenchSizes.full())
    say = echo or (lambda _msg: None)
    bf16 = native_bf16()
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
        splits = make_splits(data, val_fraction=0.1, seed=0)
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


def _timed_loads(data_dir: str, cache: Path | None) -> tuple[ImageData, float, float]:

    t0 = time.perf_counter()
    load_dataset(data_dir, cache_dir=cache)
    t1 = time.perf_counter()
    data = load_dataset(data_dir, cache_dir=cache)
    t2 = time.perf_counter()
    return data, round(t1 - t0, 3), round(t2 - t1, 3)


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
        evaluation = bounded_json.read(run_dir / "evaluation.json")
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
