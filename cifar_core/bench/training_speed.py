"""The speed benchmark's training measurements: one frozen-phase head epoch on cached features against the
seed's way, the project's fine-tuning path against plain fp32 `model.fit`, and the peak memory of fine-tuning
in a fresh process. `speed.run_bench` runs them and reports their figures."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from cifar_core.base import bounded_json
from cifar_core.base.atomic_io import atomic_save_model
from cifar_core.base.paths import PROJECT_ROOT
from cifar_core.bench.speed_settings import BenchSizes, finetune_config
from cifar_core.config import TrainConfig
from cifar_core.data.loader import load_dataset
from cifar_core.data.pipeline import make_dataset, one_hot, preprocess
from cifar_core.data.splits import Splits, make_splits
from cifar_core.model import frozen_features as features
from cifar_core.model.forward import predict_probs
from cifar_core.model.vgg import build_model, set_freeze
from cifar_core.training.phases import Phase, compile_phase

# The checkpoint's head learns at 10x the seed's head rate: a brief phase, not a tuned one.
PRETRAIN_LR = 1e-3


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


def bench_head_epoch(splits: Splits, sizes: BenchSizes) -> dict:
    """Seed: the full model with a frozen base fit on images. Project: the head fit on cached features."""
    config = TrainConfig(weights="none", batch_size=sizes.head_batch)
    keras.utils.set_random_seed(0)
    classes = len(splits.class_names)
    model = build_model(config, num_classes=classes)
    base, head = model.get_layer("base"), model.get_layer("head")
    set_freeze(base, "all")
    # A random subset: the splits are ordered by class folder.
    pick = np.random.default_rng(0).permutation(len(splits.x_train))[: sizes.head_images]
    x, y = splits.x_train[pick], one_hot(splits.y_train[pick], classes)
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
        model.fit(_preprocessed(x), one_hot(y, int(model.output_shape[-1])), batch_size=config.batch_size, epochs=1, shuffle=True, callbacks=[clock], verbose=0)
    wall, cpu = clock.per_step()
    return config.batch_size / wall, config.batch_size / cpu


def bench_finetune(splits: Splits, sizes: BenchSizes, bf16: bool, work: Path) -> tuple[dict, Path]:
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
    head.fit(feats, one_hot(splits.y_train[pre], classes), batch_size=bs, epochs=sizes.pretrain_epochs, shuffle=True, verbose=0)
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


# ---------------------------------------------------------------- memory


def bench_peak_rss(data_dir: str, cache: Path | None, sizes: BenchSizes, bf16: bool) -> float:
    """Peak RSS (MB) of a fresh process that loads the data and runs full fine-tuning steps."""
    args = {"data_dir": data_dir, "cache": str(cache) if cache else None, "steps": sizes.rss_steps,
            "batch": sizes.finetune_batch, "bf16": bf16}
    code = ("import sys; from cifar_core.base import bounded_json; from cifar_core.bench.training_speed import rss_child; "
            "rss_child(bounded_json.loads(sys.argv[1]))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"peak-memory child process failed:\n{out.stderr[-2000:]}")
    return bounded_json.loads(out.stdout.strip().splitlines()[-1], what="the peak-memory child's report")["peak_rss_mb"]


def rss_child(args: dict) -> None:
    """Run in the child: train.py's fine-tuning setup (all data loaded, augmentation on), then print peak RSS."""
    data = load_dataset(args["data_dir"], cache_dir=Path(args["cache"]) if args["cache"] else None)
    splits = make_splits(data, val_fraction=0.1, seed=0)
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
