"""The one duplicate finder (data/duplicates.py): imagehash's pHash, planted exact and near copies, different
digits never paired, and the health report (files) counting what the pages and `inspect` (arrays) count."""

from __future__ import annotations

import io
import json

import imagehash
import numpy as np
import pytest
from PIL import Image

from cifar_core.data import duplicates
from cifar_core.data.health import check_dataset
from cifar_core.data.loader import load_dataset


def photo(seed: int) -> np.ndarray:
    """A smooth, structured 32x32 RGB picture, different for each seed (random 8x8 colours, upscaled)."""
    small = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((32, 32), Image.Resampling.BILINEAR))


def jpeg(pixels: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_the_batched_phash_is_imagehashs_bit_for_bit():
    rng = np.random.default_rng(0)
    images = np.concatenate([np.stack([photo(s) for s in range(40)]), rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)])
    ours = duplicates.prints(images).phash
    for image, value in zip(images, ours):
        bits = imagehash.phash(Image.fromarray(image)).hash.flatten()
        assert int(value) == int("".join("1" if b else "0" for b in bits), 2)
    grey = duplicates.prints(images).grey
    assert all(np.array_equal(g, np.asarray(Image.fromarray(i).convert("L"))) for g, i in zip(grey, images))  # Pillow's luma


def planted() -> tuple[np.ndarray, np.ndarray]:
    """20 training and 10 test pictures, all different, then copies: train 19 = train 3 (exact, within train), test 9 =
    train 5 (exact leak), test 8 = train 6 brightened and re-encoded (near leak), test 7 = test 1 re-encoded (near,
    within test), and two flat grey pictures of different greys (never near)."""
    train = np.stack([photo(s) for s in range(20)])
    test = np.stack([photo(100 + s) for s in range(10)])
    train[19] = train[3]
    test[9] = train[5]
    test[8] = jpeg(np.clip(train[6].astype(int) * 0.9 + 20, 0, 255).astype(np.uint8))
    test[7] = jpeg(test[1], quality=60)
    train[18], test[6] = np.full((32, 32, 3), 120, np.uint8), np.full((32, 32, 3), 125, np.uint8)
    return train, test


def test_planted_copies_are_found_and_nothing_else():
    train, test = planted()
    found = duplicates.find_in_arrays(train, test)
    assert found.counts() == {"exact": {"within_train": 2, "within_test": 0, "across": 1},  # train 3 and 19 both have a copy
                              "near": {"within_train": 0, "within_test": 2, "across": 1}, "leaked_test_images": 2}
    leaks = found.leak_pairs()
    assert sorted(zip(leaks["test"], leaks["train"], leaks["kind"])) == [(8, 6, "near"), (9, 5, "exact")]
    assert leaks["similarity"].is_monotonic_decreasing and leaks["similarity"].iloc[0] == 1.0
    assert found.test_pairs()[["a", "b", "kind"]].values.tolist() == [[1, 7, "near"]]
    assert [kind for kind, _, _ in found.ordered_pairs()][:2] == ["exact", "near"]  # leaks first


def test_a_group_of_copies_counts_each_image_once_and_lists_no_square_of_pairs():
    base = photo(1)
    train = np.stack([base] * 50 + [photo(s) for s in range(2, 12)])
    test = np.stack([base] * 3 + [photo(s) for s in range(20, 25)])
    found = duplicates.find_in_arrays(train, test)
    counts = found.counts()
    assert counts["exact"] == {"within_train": 50, "within_test": 3, "across": 3} and counts["leaked_test_images"] == 3
    assert len(found.pairs["a"]) == 49 + 2 + 1  # each copy paired with the first, one pair across


def test_different_pictures_with_the_same_coarse_layout_are_not_near_copies():
    """A ship on the sea and a plane in the sky: the same grey structure (a horizon), different pictures."""
    sky = np.zeros((32, 32, 3), np.uint8)
    sky[:16], sky[16:] = (150, 190, 230), (40, 80, 140)
    ship, plane = sky.copy(), sky.copy()
    ship[12:18, 8:24] = (90, 30, 30)
    plane[4:8, 18:28] = (200, 200, 200)
    found = duplicates.find_in_arrays(ship[None], plane[None])
    assert found.counts()["leaked_test_images"] == 0


def test_different_digits_never_pair():
    """scikit-learn's digits, upscaled as the 'Your images' benchmark does: a pair of different digits counts as false."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    grey = np.round(bunch.images * (255 / 16)).astype(np.uint8)
    x = np.stack([np.asarray(Image.fromarray(g).resize((32, 32), Image.Resampling.BILINEAR).convert("RGB")) for g in grey])
    half = len(x) // 2
    found = duplicates.find_in_arrays(x[:half], x[half:])
    labels = bunch.target
    a, b = found.pairs["a"], found.pairs["b"]
    assert len(a) > 0  # near-identical samples of one digit do pair
    assert int((labels[a] != labels[b]).sum()) == 0


def test_the_health_report_and_the_pages_finder_count_the_same(tmp_path):
    """The Data page reads files, Error analysis and `inspect` the decoded arrays: one finder, one count."""
    train, test = planted()
    root = tmp_path / "d"
    for split, images in (("train", train), ("test", test)):
        for i, image in enumerate(images):
            folder = root / split / ("cat" if i % 2 else "dog")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:02d}.png")
    report = check_dataset(root, cache_dir=tmp_path / "cache")
    data = load_dataset(str(root), cache_dir=tmp_path / "cache")
    arrays = duplicates.find_in_arrays(data.x_train, data.x_test).counts()
    assert {k: report["duplicates"][k] for k in arrays} == arrays
    assert arrays["leaked_test_images"] == 2
    leak = next(p for p in report["problems"] if p["kind"] == "leak")
    assert not leak["blocking"] and "2 test image(s) have a copy in train (1 exact, 1 near" in leak["message"]
    assert report["duplicates"]["examples"][0] == {"kind": "exact", "a": "train/cat/05.png", "b": "test/cat/09.png"}
    assert json.loads(json.dumps(report)) == report


def test_no_images_no_duplicates():
    empty = np.zeros((0, 32, 32, 3), np.uint8)
    found = duplicates.find_in_arrays(empty, empty)
    assert found.counts()["leaked_test_images"] == 0 and len(found.leak_pairs()) == 0


@pytest.mark.parametrize("shape", [(2, 16, 16)])
def test_phash_refuses_other_sizes(shape):
    with pytest.raises(ValueError, match="32x32"):
        duplicates.phash(np.zeros(shape, np.uint8))
