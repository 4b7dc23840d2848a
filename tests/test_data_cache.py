"""A damaged decode cache is detected, rebuilt with a warning, and never fails a load."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cifar_core.data.loader import data_cache_folder, load_dataset, load_test_split


def truncate_x_test(entry):
    path = entry / "x_test.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garble_meta(entry):
    (entry / "meta.json").write_text("{bad")


def empty_y_train(entry):
    np.save(entry / "y_train.npy", np.zeros(0, np.int64))  # a well-formed file that no longer fits x_train


def delete_x_train(entry):
    (entry / "x_train.npy").unlink()


@pytest.mark.parametrize("damage", [truncate_x_test, garble_meta, empty_y_train, delete_x_train])
def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(damage, tiny_data, tmp_path, caplog):
    cache = tmp_path / "cache"
    first = load_dataset(str(tiny_data), cache_dir=cache)
    entry = data_cache_folder(str(tiny_data), cache_dir=cache)
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="cifar_core.data.loader"):
        again = load_dataset(str(tiny_data), cache_dir=cache)
    assert "is damaged" in caplog.text and "decoding the images again" in caplog.text
    np.testing.assert_array_equal(again.x_train, first.x_train)
    np.testing.assert_array_equal(again.y_test, first.y_test)
    caplog.clear()
    assert load_dataset(str(tiny_data), cache_dir=cache).x_test.shape == first.x_test.shape  # rebuilt: read quietly
    assert "damaged" not in caplog.text


def test_the_test_only_loader_survives_a_damaged_entry_too(tiny_data, tmp_path):
    cache = tmp_path / "cache"
    first = load_dataset(str(tiny_data), cache_dir=cache)
    truncate_x_test(data_cache_folder(str(tiny_data), cache_dir=cache))
    test = load_test_split(str(tiny_data), cache_dir=cache)
    np.testing.assert_array_equal(test.x_test, first.x_test)
