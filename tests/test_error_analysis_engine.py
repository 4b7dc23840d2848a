"""Embeddings, nearest neighbours, label-issue candidates, and the TensorBoard log (duplicates: test_duplicates.py)."""

from __future__ import annotations

import numpy as np
import pytest

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.analysis import embeddings
from cifar_core.analysis import label_issues
from cifar_core.predict.evaluate import Interpretation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_model(tiny_run):
    from cifar_core.model.vgg import load_model

    store, summary = tiny_run
    run = store.get(summary["run_id"])
    return run.model_path, load_model(run.model_path)


@pytest.fixture(scope="module")
def tiny_images(tiny_data):
    from cifar_core.data.loader import load_dataset

    return load_dataset(str(tiny_data))


# ---------------------------------------------------------------- features


def test_penultimate_features_are_the_input_of_the_last_layer(tiny_model, tiny_images):
    path, model = tiny_model
    feats = embeddings.compute_embeddings(model, tiny_images.x_test)
    assert feats.shape == (len(tiny_images.x_test), 32)  # the tiny head has one Dense(32)
    # The last layer applied to these features gives the model's own probabilities.
    last = model.get_layer("head").layers[-1]
    probs = np.asarray(last(feats))
    expected = Interpretation.load(path.parent).probs
    np.testing.assert_allclose(probs, expected, atol=1e-4)


def test_layout_features_keep_a_spatial_map(tiny_model, tiny_images):
    _, model = tiny_model
    base = model.get_layer("base")
    layer = embeddings.layout_layer(base)
    shape = base.get_layer(layer).output.shape
    assert shape[1] >= embeddings.LAYOUT_MIN_SIZE


def test_features_are_cached_beside_a_runs_predictions(tiny_run, tiny_images, tmp_path, monkeypatch):
    import shutil

    store, summary = tiny_run
    run_dir = tmp_path / "run"
    shutil.copytree(store.get(summary["run_id"]).dir, run_dir)
    path = run_dir / "model.keras"
    first = embeddings.cached_embeddings(path, tiny_images.x_test, "test")
    assert embeddings.embeddings_cached(path, tiny_images.x_test, "test")
    assert list((run_dir / "embeddings").glob("features-test-*.npy"))

    def no_compute(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(embeddings, "compute_embeddings", no_compute)
    np.testing.assert_array_equal(embeddings.cached_embeddings(path, tiny_images.x_test, "test"), first)
    # Other pixels are other features: a new key, not the cached file.
    assert not embeddings.embeddings_cached(path, tiny_images.x_test[::-1].copy(), "test")


def test_the_shipped_models_folder_is_never_written(tiny_run, tiny_images, tmp_path, monkeypatch, isolated_artifacts):
    import shutil

    store, summary = tiny_run
    shipped = tmp_path / "default"
    shutil.copytree(store.get(summary["run_id"]).dir, shipped)
    monkeypatch.setenv("CIFAR_DEFAULT_MODEL_DIR", str(shipped))
    before = sorted(p.name for p in shipped.iterdir())
    embeddings.cached_embeddings(shipped / "model.keras", tiny_images.x_test, "test")
    assert sorted(p.name for p in shipped.iterdir()) == before
    assert list((isolated_artifacts / "cache" / "embeddings").rglob("features-test-*.npy"))


def test_projections_are_two_dimensional():
    feats = np.random.default_rng(0).normal(size=(60, 16)).astype(np.float32)
    assert embeddings.project(feats, "pca").shape == (60, 2)
    if embeddings.umap_available():
        assert embeddings.project(feats, "umap").shape == (60, 2)
    with pytest.raises(ValueError, match="unknown projection"):
        embeddings.project(feats, "tsne")


# ---------------------------------------------------------------- nearest neighbours


def test_nearest_is_exact_cosine_search():
    rng = np.random.default_rng(1)
    refs = embeddings.unit_rows(rng.normal(size=(300, 8)))
    queries = embeddings.unit_rows(rng.normal(size=(40, 8)))
    idx, sim = embeddings.nearest(queries, refs, 5, chunk=7)  # chunks that do not divide the queries
    brute = queries @ refs.T
    np.testing.assert_array_equal(idx, np.argsort(-brute, axis=1)[:, :5])
    np.testing.assert_allclose(sim, np.sort(brute, axis=1)[:, ::-1][:, :5], rtol=1e-5)
    assert np.all(np.diff(sim, axis=1) <= 0)


def test_nearest_within_one_set_skips_each_image_itself():
    refs = embeddings.unit_rows(np.random.default_rng(2).normal(size=(50, 4)))
    idx, sim = embeddings.nearest(refs, refs, 3, exclude_self=True, chunk=16)
    assert not np.any(idx == np.arange(50)[:, None])
    assert np.all(sim < 1 - 1e-6)


# ---------------------------------------------------------------- label issues


def test_cleanlab_finds_flipped_labels_and_suggests_the_right_class():
    rng = np.random.default_rng(0)
    y_true = np.repeat(np.arange(10), 60)
    probs = np.full((600, 10), 0.02)
    probs[np.arange(600), y_true] = 0.82
    probs += rng.uniform(0, 0.01, probs.shape)
    probs /= probs.sum(axis=1, keepdims=True)
    flipped = rng.choice(600, 12, replace=False)
    given = y_true.copy()
    given[flipped] = (y_true[flipped] + 1 + rng.integers(0, 9, 12)) % 10
    issues = label_issues.find_label_issues(probs, given, CLASS_NAMES)
    # Confident learning prunes by estimated per-class noise counts, so it may miss a
    # flip; it must not accuse a correct label here, where the model is confident and right.
    assert set(issues.index) <= set(flipped) and len(issues) >= 0.8 * len(flipped)
    for i, row in issues.iterrows():
        assert row["given"] == CLASS_NAMES[given[i]] and row["suggested"] == CLASS_NAMES[y_true[i]]
        assert row["p_suggested"] > row["p_given"]
    assert issues["p_given"].is_monotonic_increasing  # self-confidence ranking: least confident first


def test_no_images_no_label_issues():
    issues = label_issues.find_label_issues(np.zeros((0, 10)), np.zeros(0, np.int64), CLASS_NAMES)
    assert len(issues) == 0 and list(issues.columns) == ["given", "suggested", "p_given", "p_suggested"]


# ---------------------------------------------------------------- TensorBoard


def test_each_run_has_a_tensorboard_log_counting_epochs_across_phases(tiny_run):
    from cifar_core.training import tensorboard_log

    if not tensorboard_log.available():
        pytest.skip("tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store, summary = tiny_run
    logs = store.get(summary["run_id"]).dir / tensorboard_log.LOG_FOLDER
    train = EventAccumulator(str(logs / "train"), size_guidance={"tensors": 0}).Reload()
    tags = train.Tags()["tensors"]
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate"} <= set(tags)
    epochs = [e.step for e in train.Tensors("epoch_loss")]
    assert epochs == list(range(summary["epochs_completed"]))  # 2 head + 2 fine-tune epochs: 0..3, no restart
    validation = EventAccumulator(str(logs / "validation"), size_guidance={"tensors": 0}).Reload()
    assert "epoch_accuracy" in validation.Tags()["tensors"]
