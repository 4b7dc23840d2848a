"""cifar_core.data (loader, images, layouts, splits, pipeline): every layout, the Keras fallback, the decode cache, splits, bad data and the tf.data pipeline."""

import csv
import os
import urllib.error

import keras
import numpy as np
import pytest
from conftest import synthetic_images, write_batches, write_folders, write_kaggle
from PIL import Image

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data import images as images_lib
from cifar_core.data import layouts
from cifar_core.data import loader as data_lib
from cifar_core.data.images import DataError, ImageData
from cifar_core.data.layouts.base import Layout
from cifar_core.data.loader import describe_source, load_dataset
from cifar_core.data.pipeline import image_batches, make_dataset
from cifar_core.data.splits import make_splits


def load(root, tmp_path, **kw):
    return load_dataset(str(root), cache_dir=tmp_path / "cache", **kw)


# ---------------------------------------------------------------- layouts


def test_folders_png_are_loaded_pixel_exact_in_class_order(tmp_path):
    root = write_folders(tmp_path / "d", n_train=3, n_test=2)
    data = load(root, tmp_path)
    x, y = synthetic_images(3, seed=0)
    np.testing.assert_array_equal(data.x_train, x)
    np.testing.assert_array_equal(data.y_train, y)
    assert data.x_test.shape == (20, 32, 32, 3) and data.x_test.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(data.y_test), [2] * 10)


def test_folders_jpg_keep_labels_and_approximate_pixels(tmp_path):
    root = write_folders(tmp_path / "d", n_train=3, n_test=2, suffix=".jpg")
    data = load(root, tmp_path)
    x, y = synthetic_images(3, seed=0)
    assert data.x_train.shape == (30, 32, 32, 3)
    np.testing.assert_array_equal(data.y_train, y)
    assert np.abs(data.x_train.astype(int) - x).mean() < 12  # lossy, but the same pictures


def test_kaggle_layout_holds_out_a_stratified_test_split(tmp_path):
    root = write_kaggle(tmp_path / "k", n_train=10)
    data = load(root, tmp_path)
    assert data.x_train.shape == (90, 32, 32, 3) and data.x_test.shape == (10, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(data.y_train), [9] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test), [1] * 10)
    # Every image keeps its own label from trainLabels.csv.
    x, y = synthetic_images(10, seed=0)
    label_of = {img.tobytes(): label for img, label in zip(x, y)}
    for img, label in zip(np.concatenate([data.x_train, data.x_test]), np.concatenate([data.y_train, data.y_test])):
        assert label_of[img.tobytes()] == label


def test_python_batches_are_loaded(tmp_path):
    root = write_batches(tmp_path / "b", n_per_class=2)
    data = load(root, tmp_path)
    assert data.x_train.shape == (100, 32, 32, 3) and data.x_test.shape == (20, 32, 32, 3)
    x0, y0 = synthetic_images(2, seed=0)  # data_batch_1
    np.testing.assert_array_equal(data.x_train[:20], x0)
    np.testing.assert_array_equal(data.y_train[:20], y0)
    # The folder itself (not only its parent) is accepted.
    assert load(root / "cifar-10-batches-py", tmp_path).x_train.shape == (100, 32, 32, 3)


def test_unrecognised_folder_lists_accepted_layouts(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load(tmp_path / "empty", tmp_path)
    for layout in ("image folders", "Kaggle", "python batches", "--data-dir", "CIFAR10_DIR"):
        assert layout in str(info.value)


def test_a_new_layout_is_one_layout_and_one_registry_entry(tmp_path, monkeypatch):
    """Detection, the status summary, loading and the decode cache all go through the registered layout object."""

    class Npz(Layout):
        name = "npz"
        help = "npz: <dir>/data.npz"

        def detect(self, root):
            return root if (root / "data.npz").is_file() else None

        def classes(self, folder):
            return ("a", "b")

        def counts(self, folder):
            return {"train": 4, "test": 2}

        def source_files(self, folder):
            return [folder / "data.npz"]

        def load(self, folder, *, skip_bad, progress, limit=None, splits=("train", "test")):
            x = np.load(folder / "data.npz")["x"]
            return ImageData(x[:4], np.array([0, 1, 0, 1]), x[4:], np.array([0, 1]), source=f"npz at {folder}", class_names=("a", "b"))

    monkeypatch.setattr(layouts, "LAYOUTS", (*layouts.LAYOUTS, Npz()))
    root = tmp_path / "n"
    root.mkdir()
    np.savez(root / "data.npz", x=synthetic_images(1, seed=3)[0][:6])
    assert describe_source(str(root)) == {"ok": True, "layout": "npz", "path": str(root), "counts": {"train": 4, "test": 2},
                                          "class_names": ("a", "b")}
    data = load(root, tmp_path)
    assert data.class_names == ("a", "b") and data.x_test.shape == (2, 32, 32, 3)
    assert load(root, tmp_path).source == data.source  # read back from the decode cache


# ---------------------------------------------------------------- keras download fallback


def test_no_folder_uses_keras_download_and_fails_offline_with_one_message(monkeypatch):
    calls = []

    def offline():
        calls.append(1)
        raise Exception("URL fetch failure on https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", offline)
    with pytest.raises(DataError) as info:
        load_dataset(None)
    assert calls == [1]
    message = str(info.value)
    assert "keras.datasets.cifar10.load_data()" in message and "Temporary failure" in message
    for layout in ("image folders", "Kaggle", "python batches", "--data-dir", "CIFAR10_DIR"):
        assert layout in message


def test_real_keras_download_path_fails_offline_as_data_error(monkeypatch, tmp_path):
    # The real load_data -> get_file, with an empty Keras cache and no network.
    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "keras_home"))
    tried = []

    def no_network(url, *args, **kwargs):
        tried.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", no_network)
    with pytest.raises(DataError, match="Accepted CIFAR-10 layouts"):
        load_dataset(None)
    assert tried and "cifar-10" in tried[0]


def test_keras_download_result_is_used_when_it_works(monkeypatch):
    x, y = synthetic_images(1, seed=3)
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: ((x, y.reshape(-1, 1)), (x[:5], y[:5].reshape(-1, 1))))
    data = load_dataset(None)
    assert data.y_train.shape == (10,) and data.y_test.shape == (5,)
    assert data.source == "keras.datasets.cifar10"


# ---------------------------------------------------------------- cache and progress


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = write_folders(tmp_path / "d", n_train=2, n_test=1)
    first = load(root, tmp_path)

    def no_decoding(path):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(images_lib, "_decode", no_decoding)
    second = load(root, tmp_path)
    np.testing.assert_array_equal(second.x_train, first.x_train)
    np.testing.assert_array_equal(second.y_test, first.y_test)


def test_changed_file_invalidates_the_cache(tmp_path):
    root = write_folders(tmp_path / "d", n_train=2, n_test=1)
    load(root, tmp_path)
    changed = sorted((root / "train" / "airplane").iterdir())[0]
    Image.fromarray(np.full((32, 32, 3), 7, np.uint8)).save(changed)
    os.utime(changed, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    data = load(root, tmp_path)
    assert (data.x_train[0] == 7).all()
    assert len(list((tmp_path / "cache").glob("cifar10-*"))) == 2


def test_relabelled_file_invalidates_the_cache(tmp_path):
    # Moving a file to another class folder keeps its name, size and mtime; its label must still change.
    root = write_folders(tmp_path / "d", n_train=3, n_test=1)  # cat keeps the 2 training images a class needs
    before = load(root, tmp_path)
    moved = sorted((root / "train" / "cat").iterdir())[-1]  # stays in the same place of the sorted file list
    moved.rename(root / "train" / "deer" / moved.name)
    after = load(root, tmp_path)
    np.testing.assert_array_equal(np.bincount(after.y_train), [3, 3, 3, 2, 4, 3, 3, 3, 3, 3])
    assert not np.array_equal(before.y_train, after.y_train)


def test_progress_is_reported_while_decoding(tmp_path):
    root = write_folders(tmp_path / "d", n_train=2, n_test=1)
    calls = []
    load(root, tmp_path, progress=lambda done, total, what: calls.append((done, total, what)))
    assert (20, 20, "decoding train split") in calls
    assert (10, 10, "decoding test split") in calls


def test_test_split_alone_decodes_no_training_image(tmp_path, monkeypatch):
    root = write_folders(tmp_path / "d", n_train=2, n_test=1)
    decode = images_lib._decode

    def test_images_only(path):
        assert "train" not in path.parts, f"decoded the training image {path}"
        return decode(path)

    monkeypatch.setattr(images_lib, "_decode", test_images_only)
    part = data_lib.load_test_split(str(root), cache_dir=tmp_path / "cache")
    assert len(part.x_train) == len(part.y_train) == 0
    monkeypatch.setattr(images_lib, "_decode", decode)
    whole = load(root, tmp_path)
    np.testing.assert_array_equal(part.x_test, whole.x_test)
    np.testing.assert_array_equal(part.y_test, whole.y_test)
    # A test-only cache entry never stands in for the whole dataset: the training images are there.
    assert len(whole.x_train) == 20


def test_test_split_alone_reads_a_full_cache_entry(tmp_path, monkeypatch):
    root = write_folders(tmp_path / "d", n_train=2, n_test=1)
    whole = load(root, tmp_path)
    monkeypatch.setattr(images_lib, "_decode", lambda path: pytest.fail(f"decoded {path} despite the cache"))
    part = data_lib.load_test_split(str(root), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(part.x_test, whole.x_test)
    assert len(part.x_train) == 0


def test_test_split_alone_of_a_kaggle_folder_is_its_hold_out(tmp_path):
    root = write_kaggle(tmp_path / "k", n_train=10)
    part = data_lib.load_test_split(str(root), cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(part.x_test, load(root, tmp_path).x_test)
    assert len(part.x_train) == 0


# ---------------------------------------------------------------- splits


@pytest.fixture(scope="module")
def forty_per_class():
    x, y = synthetic_images(40, seed=5)
    return ImageData(x, y, x[:10], y[:10], source="synthetic", class_names=CLASS_NAMES)


def test_validation_split_is_stratified_and_seeded(forty_per_class):
    a = make_splits(forty_per_class, val_fraction=0.25, seed=1)
    b = make_splits(forty_per_class, val_fraction=0.25, seed=1)
    c = make_splits(forty_per_class, val_fraction=0.25, seed=2)
    np.testing.assert_array_equal(np.bincount(a.y_val), [10] * 10)
    np.testing.assert_array_equal(np.bincount(a.y_train), [30] * 10)
    np.testing.assert_array_equal(a.x_val, b.x_val)
    assert not np.array_equal(a.x_val, c.x_val)
    # Val and train are disjoint and together are the whole training set.
    seen = {img.tobytes() for img in np.concatenate([a.x_train, a.x_val])}
    assert len(seen) == 400
    # The test split is untouched.
    np.testing.assert_array_equal(a.x_test, forty_per_class.x_test)


def test_limit_keeps_the_first_n_images_per_class(forty_per_class):
    s = make_splits(forty_per_class, val_fraction=0.2, seed=0, limit=5)
    np.testing.assert_array_equal(np.bincount(np.concatenate([s.y_train, s.y_val])), [5] * 10)
    first_five = {img.tobytes() for c in range(10) for img in forty_per_class.x_train[forty_per_class.y_train == c][:5]}
    assert {img.tobytes() for img in np.concatenate([s.x_train, s.x_val])} == first_five


# ---------------------------------------------------------------- bad data


@pytest.fixture
def folders(tmp_path):
    return write_folders(tmp_path / "d", n_train=2, n_test=1)


def test_missing_and_extra_class_folders_are_named(folders, tmp_path):
    for f in (folders / "train" / "cat").iterdir():
        f.unlink()
    (folders / "train" / "cat").rmdir()
    (folders / "train" / "unicorn").mkdir()
    with pytest.raises(DataError) as info:
        load(folders, tmp_path)
    message = str(info.value)
    assert "has no folder for: unicorn" in message  # in train/, not in test/
    assert "has folders that train/ lacks: cat" in message


def test_unreadable_files_are_named_first_ones_first(folders, tmp_path):
    bad = [folders / "train" / "dog" / f"bad{i}.png" for i in range(7)]
    for p in bad:
        p.write_text("not a picture")
    good = next((folders / "train" / "cat").iterdir())
    (folders / "train" / "cat" / "cut.png").write_bytes(good.read_bytes()[:40])  # truncated
    with pytest.raises(DataError) as info:
        load(folders, tmp_path)
    message = str(info.value)
    assert "8 unreadable or non-image file(s)" in message and "--skip-bad" in message
    assert "cut.png" in message and "bad0.png" in message
    assert "bad6.png" not in message  # only the first few are listed


def test_skip_bad_reports_the_skipped_count(folders, tmp_path):
    (folders / "train" / "dog" / "notes.txt").write_text("hello")
    (folders / "test" / "cat" / "empty.jpg").write_bytes(b"")
    data = load(folders, tmp_path, skip_bad=True)
    assert len(data.skipped) == 2
    assert any("notes.txt" in s for s in data.skipped) and any("empty.jpg" in s for s in data.skipped)
    assert len(data.x_train) == 20 and len(data.x_test) == 10
    assert len(data.y_train) == len(data.x_train)


def test_empty_split_is_an_error(folders, tmp_path):
    for d in (folders / "test").iterdir():
        for f in d.iterdir():
            f.unlink()
    with pytest.raises(DataError, match="test split .* has no images"):
        load(folders, tmp_path)


def test_split_empty_after_skipping_is_an_error(folders, tmp_path):
    for f in (folders / "test").rglob("*.png"):
        f.write_text("x")
    with pytest.raises(DataError, match="test split is empty"):
        load(folders, tmp_path, skip_bad=True)


def rewrite_labels(root, edit):
    path = root / "trainLabels.csv"
    rows = list(csv.reader(path.open()))
    rows = [rows[0]] + edit(rows[1:])
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def test_kaggle_class_list_comes_from_its_labels(tmp_path):
    root = write_kaggle(tmp_path / "k", n_train=2)
    rewrite_labels(root, lambda rows: [[rows[0][0], "unicorn"]] + rows[1:])
    data = load(root, tmp_path)
    assert data.class_names == tuple(sorted([*CLASS_NAMES, "unicorn"]))
    assert describe_source(str(root))["class_names"] == data.class_names


def test_kaggle_missing_ids_are_named(tmp_path):
    root = write_kaggle(tmp_path / "k", n_train=2)
    (root / "train" / "3.png").unlink()
    (root / "train" / "7.png").unlink()
    with pytest.raises(DataError) as info:
        load(root, tmp_path)
    assert "2 id(s)" in str(info.value) and "3, 7" in str(info.value)


def test_kaggle_csv_without_label_column_is_named(tmp_path):
    root = write_kaggle(tmp_path / "k", n_train=1)
    (root / "trainLabels.csv").write_text("id,class\n1,cat\n")
    with pytest.raises(DataError, match="must have columns 'id' and 'label'"):
        load(root, tmp_path)


def test_missing_python_batch_is_named(tmp_path):
    root = write_batches(tmp_path / "b", n_per_class=1)
    (root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3 is missing"):
        load(root, tmp_path)


def test_describe_source_counts_without_decoding(tmp_path):
    folders = write_folders(tmp_path / "d", n_train=2, n_test=1)
    assert describe_source(str(folders)) == {"ok": True, "layout": "folders", "path": str(folders), "counts": {"train": 20, "test": 10},
                                             "class_names": CLASS_NAMES}
    kaggle = write_kaggle(tmp_path / "k", n_train=3)
    assert describe_source(str(kaggle))["counts"] == {"train": 30}
    missing = describe_source(str(tmp_path / "nowhere"))
    assert not missing["ok"] and "does not exist" in missing["message"]
    assert not describe_source(None)["ok"]


# ---------------------------------------------------------------- tf.data pipeline


@pytest.fixture(scope="module")
def images():
    return synthetic_images(2, seed=9)


def batches(ds):
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(xs), np.concatenate(ys)


def test_pipeline_applies_vgg16_preprocess_input(images):
    x, y = images
    got, labels = batches(make_dataset(x, y, 8, training=False, num_classes=10))
    expected = keras.applications.vgg16.preprocess_input(x.astype(np.float32))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(np.concatenate([b.numpy() for b in image_batches(x, 8)]), expected, atol=1e-4)  # predicting's input
    np.testing.assert_array_equal(labels.argmax(1), y)
    assert labels.shape == (20, 10)


def test_pipeline_resizes_to_the_input_size(images):
    import tensorflow as tf

    x, y = images
    got, _ = batches(make_dataset(x, y, 8, training=False, input_size=64, num_classes=10))
    assert got.shape == (20, 64, 64, 3)
    expected = keras.applications.vgg16.preprocess_input(tf.image.resize(x.astype(np.float32), (64, 64)).numpy())
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_augmentation_only_changes_training_images(images):
    x, y = images
    plain = {np.round(img, 3).tobytes() for img in keras.applications.vgg16.preprocess_input(x.astype(np.float32))}

    def unseen(ds):
        got, _ = batches(ds)
        return sum(np.round(img, 3).tobytes() not in plain for img in got)

    assert unseen(make_dataset(x, y, 8, training=False, augment=True, num_classes=10)) == 0
    assert unseen(make_dataset(x, y, 8, training=True, augment=False, num_classes=10)) == 0
    assert unseen(make_dataset(x, y, 8, training=True, augment=True, seed=3, num_classes=10)) > 0
