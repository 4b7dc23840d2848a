"""`python -m cifar_core bench ood`: how well "none of these" (`predict.ood`) tells a model's own kind of image
from images of none of its classes.

In-distribution: the model's test images (its classes, from the data folder). Out-of-distribution sets, all
built here, offline:

  digits          scikit-learn's handwritten digits (1,797, 8x8 grey 0-16), upscaled to 32x32 RGB
  noise           uniform random pixels
  flat colours    one uniform random colour per image
  blurred noise   random noise smoothed by a Gaussian (sigma 2 pixels), contrast stretched: smooth colour blobs
  held-out classes  CIFAR-10's last five classes (dog .. truck), seen by a 5-class model trained here from
                  scratch on the first five (airplane .. deer); its in-distribution images are those five's
                  test images. Semantic novelty at the same low-level statistics: the hardest set.

For each set and each score of `ood.METHODS`: the AUROC (in-distribution against out-of-distribution), the
false-alarm rate at 95% recall (the share of out-of-distribution images still taken for a class when the
threshold keeps 95% of the in-distribution test images), and, at the threshold the method gets from the
model's validation images (what Classify and `predict` use), the share of test images kept and of
out-of-distribution images flagged. One JSON line per set and method.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from cifar_core.predict import ood
from cifar_core.predict.model_outputs import Outputs, batch_outputs

SEED = 0
SYNTHETIC_IMAGES = 1000  # per synthetic set (noise, flat colours, blurred noise)
KNOWN = ("airplane", "automobile", "bird", "cat", "deer")
HELD_OUT = ("dog", "frog", "horse", "ship", "truck")
# The 5-class model: small and from scratch (a base that saw the held-out classes would make them familiar).
FIVE_CLASS = dict(weights="none", arch="vgg16_bn", width=0.25, cut="block4_pool", head="gap", head_units=(128,), dropout=0.1,
                  epochs_head=0, epochs_finetune=8, batch_size=128, optimizer="sgd", schedule="onecycle", finetune_lr=0.1,
                  momentum=0.9, weight_decay=5e-4, augment=True, finetune_freeze="none", tta=False, limit=1000,
                  val_fraction=0.2, seed=SEED, bf16=False)
QUICK_FIVE_CLASS = dict(epochs_finetune=1, limit=20, batch_size=32)
QUICK_IMAGES = 200  # per set with --quick


def digit_images() -> np.ndarray:
    """scikit-learn's digits as 32x32 RGB uint8 (grey 0-16 scaled to 0-255, bilinear upscaling)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    grey = np.round(load_digits().images * (255 / 16)).astype(np.uint8)
    return np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")) for g in grey])


def synthetic_sets(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Uniform noise, flat colours and blurred noise, `n` 32x32 RGB uint8 images each."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    flat = np.broadcast_to(rng.integers(0, 256, (n, 1, 1, 3), dtype=np.uint8), (n, 32, 32, 3)).copy()
    blurred = gaussian_filter(rng.random((n, 32, 32, 3)), sigma=(0, 2, 2, 0))
    low, high = blurred.min(axis=(1, 2, 3), keepdims=True), blurred.max(axis=(1, 2, 3), keepdims=True)
    blobs = np.round(255 * (blurred - low) / np.maximum(high - low, 1e-9)).astype(np.uint8)
    return {"noise": noise, "flat colours": flat, "blurred noise": blobs}


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """The probability that an in-distribution image scores above an out-of-distribution one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(inside)), np.zeros(len(outside))], np.r_[inside, outside]))


def rows(detector: ood.Detector, val: Outputs, test: Outputs, sets: dict[str, Outputs], model: str) -> Iterator[dict]:
    """One row per (out-of-distribution set, method): AUROC, false alarms at 95% test recall, and the validation
    threshold's recall and flags. A fallback detector (too few validation images) has no standardisation for the
    combined score: the validation images give it one here."""
    if not {"mahalanobis", "energy"} <= detector.standardise.keys():
        parts = {part: detector.scores(val, part) for part in ("mahalanobis", "energy")}
        detector = dataclasses.replace(detector, standardise={p: [float(s.mean()), float(max(s.std(), 1e-12))] for p, s in parts.items()})
    for method in ood.METHODS:
        threshold = ood.threshold_of(detector.scores(val, method), detector.recall)
        inside = detector.scores(test, method)
        at_recall = ood.threshold_of(inside, ood.RECALL)
        for name, outputs in sets.items():
            outside = detector.scores(outputs, method)
            yield {"model": model, "ood_set": name, "method": method, "auroc": round(auroc(inside, outside), 4),
                   "false_alarms_at_95_recall": round(float(np.mean(outside >= at_recall)), 4),
                   "threshold": round(threshold, 4), "test_kept_at_threshold": round(float(np.mean(inside >= threshold)), 4),
                   "ood_flagged_at_threshold": round(float(np.mean(outside < threshold)), 4),
                   "in_images": len(inside), "out_images": len(outside), "stored_method": method == detector.method}


def _outputs(model, x: np.ndarray, tta: bool, progress) -> Outputs:
    return batch_outputs(model, x, input_size=int(model.input_shape[1]), tta=tta, progress=progress)


def model_rows(model_path: Path, config, data_dir: str, *, quick: bool, progress=None,
               echo: Callable[[str], None] | None = None) -> Iterator[dict]:
    """The rows of the model at `model_path` (settings `config`, a TrainConfig) against digits and the synthetic sets."""
    from cifar_core.data.classes import model_class_names
    from cifar_core.model.vgg import load_model
    from cifar_core.predict.model_data import load_model_data

    model = load_model(model_path)
    splits = load_model_data(data_dir, model_class_names(model_path, int(model.output_shape[-1])), skip_bad=config.skip_bad,
                             limit=config.limit, progress=progress, splits_of=config).splits
    tta, pick = bool(config.tta), np.random.default_rng(SEED)
    test_x = splits.x_test if not quick else splits.x_test[pick.permutation(len(splits.x_test))[:QUICK_IMAGES]]
    detector = ood.read(model_path.parent)
    if detector is None or detector.tta != tta:
        if echo:
            echo("bench ood: the model has no stored detector for its TTA setting; fitting one on its splits")
        detector = ood.fit_on_splits(model, splits, tta=tta, progress=progress, seed=config.seed)
    digits = digit_images()
    sets = {"digits": digits[:QUICK_IMAGES] if quick else digits, **synthetic_sets(QUICK_IMAGES if quick else SYNTHETIC_IMAGES)}
    val_x = splits.x_val[:QUICK_IMAGES] if quick else splits.x_val
    val, test = _outputs(model, val_x, tta, progress), _outputs(model, test_x, tta, progress)
    yield from rows(detector, val, test, {name: _outputs(model, x, tta, progress) for name, x in sets.items()}, str(model_path))


def held_out_rows(data_dir: str, *, quick: bool, progress=None, echo: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Train the 5-class model (in a temporary run store), then its rows against the five classes it never saw."""
    from cifar_core.config import TrainConfig
    from cifar_core.model.vgg import load_model
    from cifar_core.predict.model_data import load_model_data
    from cifar_core.runs.store import RunStore
    from cifar_core.training.trainer import train

    config = TrainConfig(**{**FIVE_CLASS, **(QUICK_FIVE_CLASS if quick else {}), "data_dir": data_dir, "classes": KNOWN}).validate()
    with tempfile.TemporaryDirectory(prefix="cifar-bench-ood-") as tmp:
        if echo:
            echo(f"bench ood: training the 5-class model ({', '.join(KNOWN)}) from scratch")
        summary = train(config, store=RunStore(Path(tmp)))
        folder = Path(summary["run_dir"])
        model, detector = load_model(folder / "model.keras"), ood.read(folder)
        splits = load_model_data(data_dir, KNOWN, limit=config.limit, progress=progress, splits_of=config).splits
        unseen = load_model_data(data_dir, HELD_OUT, progress=progress, test_only=True).data.x_test
        test_x = splits.x_test
        if quick:
            test_x, unseen = test_x[:QUICK_IMAGES], unseen[:QUICK_IMAGES]
        val, test, out = (_outputs(model, x, False, progress) for x in (splits.x_val, test_x, unseen))
        label = f"5-class model trained here (test accuracy {summary['test_accuracy']:.1%})"
        yield from rows(detector, val, test, {"held-out classes": out}, label)


def run_ood_bench(model_path: Path, config, data_dir: str, *, quick: bool = False, held_out: bool = True, progress=None,
                  echo: Callable[[str], None] | None = None) -> Iterator[dict]:
    """Every row: the model against digits and the synthetic sets, then (with `held_out`) the 5-class model."""
    yield from model_rows(Path(model_path), config, data_dir, quick=quick, progress=progress, echo=echo)
    if held_out:
        yield from held_out_rows(data_dir, quick=quick, progress=progress, echo=echo)


def markdown_table(lines: list[dict]) -> str:
    """The rows as the README's table: one line per set, AUROC and false alarms per method."""
    sets = list(dict.fromkeys(r["ood_set"] for r in lines))
    head = "| out-of-distribution set | " + " | ".join(f"{m} AUROC / false alarms" for m in ood.METHODS) + " |"
    body = [head, "|---|" + "---|" * len(ood.METHODS)]
    for name in sets:
        cells = {r["method"]: f"{r['auroc']:.3f} / {r['false_alarms_at_95_recall']:.1%}" for r in lines if r["ood_set"] == name}
        body.append(f"| {name} | " + " | ".join(cells.get(m, "") for m in ood.METHODS) + " |")
    return "\n".join(body)

