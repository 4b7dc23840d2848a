"""Similar training images: altered copies find their originals, the bench's alterations, the `similar` CLI, and
the file behind each training image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cifar_core.analysis import similar
from cifar_core.bench import similar as similar_bench
from cifar_core.cli.main import main
from cifar_core.data.loader import load_dataset, select_classes, split_files
from tests.conftest import tiny_config, write_folders, write_kaggle


def photos(n: int, seed: int) -> np.ndarray:
    """Distinct smooth images (a random 4x4 colour grid enlarged, plus noise): unlike the class-striped
    synthetic data, each one is its own picture, as photos are."""
    rng = np.random.default_rng(seed)
    grids = rng.uniform(0, 255, (n, 4, 4, 3))
    smooth = np.stack([np.asarray(Image.fromarray(g.astype(np.uint8)).resize((32, 32), Image.Resampling.BICUBIC)) for g in grids])
    return np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def random_model(tmp_path_factory, tiny_data):
    """An untrained studio model (random VGG16-BN base cut at block3): mid-level maps of a random
    network already tell images apart, and building one takes seconds, not a training run."""
    from cifar_core.model.vgg import build_model

    path = tmp_path_factory.mktemp("similar_model") / "model.keras"
    build_model(tiny_config(tiny_data), num_classes=10).save(path)
    return path


def test_alterations_shift_mirror_and_reencode():
    x = photos(20, 0)
    shifted = similar_bench.alter(x, "shift", seed=1)
    assert shifted.shape == x.shape and shifted.dtype == np.uint8
    for original, moved in zip(x, shifted):  # each is the original moved by 1-2 pixels: its middle matches one offset
        offsets = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.array_equal(moved[4:28, 4:28], original[4 - dy:28 - dy, 4 - dx:28 - dx])]
        assert offsets and offsets[0] != (0, 0)
    assert np.array_equal(similar_bench.alter(x, "flip"), x[:, :, ::-1])
    jpeg = similar_bench.alter(x, "jpeg")
    assert jpeg.shape == x.shape and not np.array_equal(jpeg, x) and np.abs(jpeg.astype(int) - x).mean() < 20
    with pytest.raises(ValueError, match="unknown alteration"):
        similar_bench.alter(x, "rotate")


def test_an_altered_training_image_finds_its_original(random_model):
    x_train, x_test = photos(60, 1), photos(10, 2)
    result = similar_bench.bench_similar(random_model, x_train, x_test, queries=60, test_queries=10, timed=3)
    for kind in similar_bench.ALTERATIONS:
        assert result["retrieval"][kind]["top1"] >= 0.9, (kind, result["retrieval"])
        assert result["retrieval"][kind]["top5"] >= result["retrieval"][kind]["top1"]
    assert result["retrieval"]["flip"]["top1"] == 1.0  # a mirrored copy is searched as its mirror too
    # Other pictures are not all "0.999 similar": the similarities of unrelated images spread out.
    assert result["test_top8_similarity"]["p95"] < 0.95
    # block3 has 256 channels at width 1; 60 images are too few to fit a projection on
    assert result["descriptor_dim"] == result["index_dim"] == similar.GRID ** 2 * 256 and result["train_images"] == 60


def test_search_ranks_the_image_itself_first_at_similarity_one(random_model):
    x = photos(30, 3)
    search = similar.SimilarSearch(random_model, x)
    idx, sim = search.search(x[[7, 11]], k=4)
    assert idx[:, 0].tolist() == [7, 11] and sim[:, 0] == pytest.approx(1.0, abs=1e-3)
    assert (np.diff(sim, axis=1) <= 1e-6).all() and (sim[:, 1:] < 0.99).all()
    assert similar.descriptors_cached(random_model, x)  # kept on disk: the next search reads them
    again = similar.SimilarSearch(random_model, x)
    np.testing.assert_allclose(again.index.unit, search.index.unit, atol=2e-3)  # float16 on disk


@pytest.mark.parametrize("layout", ["folders", "kaggle"])
def test_split_files_name_the_file_of_each_image(tmp_path, layout):
    root = write_folders(tmp_path / "d") if layout == "folders" else write_kaggle(tmp_path / "d")
    data = load_dataset(str(root), cache_dir=tmp_path / "cache")
    picked = ("dog", "airplane")
    for split in ("train", "test"):
        files = split_files(str(root), data, split, picked)
        x = getattr(select_classes(data, picked), f"x_{split}")
        assert len(files) == len(x)
        for f, image in zip(files, x):  # PNG is lossless: each file decodes to its image
            assert np.array_equal(np.asarray(Image.open(f).convert("RGB")), image)


def test_split_files_are_none_without_files(tmp_path):
    from tests.conftest import write_batches

    root = write_batches(tmp_path / "b")
    assert split_files(str(root), load_dataset(str(root), cache_dir=tmp_path / "cache"), "train") is None


def test_similar_cli_prints_the_nearest_training_files_and_exits_1_on_a_bad_file(random_model, tiny_data, tmp_path, capsys):
    own = sorted((tiny_data / "train" / "cat").glob("*.png"))[3]
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    code = main(["similar", "--model", str(random_model), "--data-dir", str(tiny_data), "--k", "3", str(own), str(bad)])
    assert code == 1
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["file"] == str(own) and len(first["neighbours"]) == 3
    top = first["neighbours"][0]
    assert top["file"] == str(own.resolve()) and top["label"] == "cat" and top["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert [n["similarity"] for n in first["neighbours"]] == sorted((n["similarity"] for n in first["neighbours"]), reverse=True)
    assert second == {"file": str(bad), "error": second["error"]} and "not a readable image" in second["error"]


def test_similar_cli_exits_0_when_every_file_is_read(random_model, tiny_data, capsys):
    files = sorted((tiny_data / "test" / "dog").glob("*.png"))[:2]
    assert main(["similar", "--model", str(random_model), "--data-dir", str(tiny_data), *map(str, files)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["file"] for line in lines] == list(map(str, files)) and all(len(line["neighbours"]) == 8 for line in lines)


def test_index_projects_many_descriptors_and_still_ranks_an_indexed_image_first():
    rng = np.random.default_rng(4)
    descriptors = rng.normal(size=(5 * similar.DIM, 2 * similar.DIM)).astype(np.float32) + 3.0  # off-centre, as ReLU maps are
    index = similar.SimilarIndex(descriptors)
    assert index.unit.shape == (len(descriptors), similar.DIM)
    idx, sim = index.query(descriptors[[42]] * 2.0, k=3)  # cosine after centring: twice the descriptor is not the same
    assert idx.shape == sim.shape == (1, 3) and (np.diff(sim) <= 0).all()
    idx, sim = index.query(descriptors[[42]], mirrored=descriptors[[7]], k=2)  # the better of the image and its mirror
    assert sorted(idx[0].tolist()) == [7, 42] and sim[0] == pytest.approx(1.0, abs=1e-4)


def test_bench_similar_prints_one_json_line_for_a_model_and_data_folder(random_model, tiny_data, capsys):
    assert main(["bench", "similar", "--model", str(random_model), "--data-dir", str(tiny_data), "--quick"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["train_images"] == 120 and result["altered_queries"] == 100 and result["test_queries"] == 40
    assert set(result["retrieval"]) == set(similar_bench.ALTERATIONS)
    assert all(0 <= r["top1"] <= r["top5"] <= 1 for r in result["retrieval"].values())
    assert result["test_top8_same_class"] is not None and result["query_ms_p50"] > 0
