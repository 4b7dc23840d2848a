"""`bench duplicates`: what the duplicate finder (data/duplicates.py) finds, and how to judge whether it is right.

On a dataset (CIFAR-10 by default): the counts, a seeded random sample of the pairs it found drawn as a contact
sheet (a PNG to look at: precision is a person's judgement of that sample), and whether the health report,
which reads the files, counts what the pages' finder counts over the decoded arrays (they must agree). On
scikit-learn's digits (the 'Your images' benchmark's split): the pairs found and how many pair two different
digits, which must be none.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cifar_core.data import duplicates

SAMPLE = 48  # pairs drawn on the contact sheet
SCALE = 3  # each 32x32 image drawn 96x96
COLUMNS = 6


def run_duplicates_bench(data_dir: str, out_dir: Path, sample: int = SAMPLE, seed: int = 0) -> dict:
    """One JSON-able dict: the dataset's counts and sample (with the sheet's path), the health report's agreement,
    and the digits' pairs."""
    from cifar_core.data.health import check_dataset
    from cifar_core.data.loader import load_dataset

    data = load_dataset(data_dir)
    found = duplicates.find_in_arrays(data.x_train, data.x_test)
    counts = found.counts()
    pairs = found.ordered_pairs()
    picked = sorted(np.random.default_rng(seed).choice(len(pairs), min(sample, len(pairs)), replace=False)) if pairs else []
    images = np.concatenate([data.x_train, data.x_test])
    labels = np.concatenate([data.y_train, data.y_test])
    shown = [pairs[i] for i in picked]
    out_dir.mkdir(parents=True, exist_ok=True)
    sheet = out_dir / "duplicates-sample.png"
    contact_sheet(shown, images, sheet)
    report = check_dataset(data_dir)["duplicates"]
    return {
        "data": data_dir, "rule": duplicates.RULE, "counts": counts, "pairs": len(pairs),
        "cross_label_pairs": sum(1 for _, a, b in pairs if labels[a] != labels[b]),
        "health_report_agrees": {k: report[k] for k in counts} == counts,
        "sample": {"seed": seed, "sheet": str(sheet), "pairs": [
            {"number": n, "kind": kind, "a": _named(a, found.n_train), "b": _named(b, found.n_train),
             "classes": [data.class_names[labels[a]], data.class_names[labels[b]]]} for n, (kind, a, b) in enumerate(shown)]},
        "digits": digits_pairs(),
    }


def digits_pairs() -> dict:
    """The finder on scikit-learn's digits, upscaled and split as `bench yours` does: pairs, and pairs of two
    different digits (each one a false pair)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from cifar_core.bench.yours import DIGITS_TEST_FRACTION, SEED

    bunch = load_digits()
    grey = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")) for g in grey])
    x_train, x_test, y_train, y_test = train_test_split(x, bunch.target, test_size=DIGITS_TEST_FRACTION, stratify=bunch.target,
                                                        random_state=SEED)
    found = duplicates.find_in_arrays(x_train, x_test)
    labels = np.concatenate([y_train, y_test])
    a, b = found.pairs["a"], found.pairs["b"]
    return {"images": len(x), "pairs": len(a), "cross_label_pairs": int((labels[a] != labels[b]).sum()),
            "counts": found.counts()}


def _named(index: int, n_train: int) -> str:
    return f"train #{index}" if index < n_train else f"test #{index - n_train}"


def contact_sheet(pairs: list[tuple[str, int, int]], images: np.ndarray, path: Path) -> None:
    """The pairs side by side, numbered as in the JSON, with their kind, in a grid of COLUMNS."""
    side = 32 * SCALE
    width, height = 2 * side + 10, side + 16
    rows = max(1, -(-len(pairs) // COLUMNS))
    sheet = Image.new("RGB", (COLUMNS * width, rows * height), "white")
    draw = ImageDraw.Draw(sheet)
    for n, (kind, a, b) in enumerate(pairs):
        row, col = divmod(n, COLUMNS)
        for k, index in enumerate((a, b)):
            tile = Image.fromarray(images[index]).resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(tile, (col * width + k * side, row * height))
        draw.text((col * width, row * height + side + 2), f"#{n} {kind}", fill="black")
    sheet.save(path)
