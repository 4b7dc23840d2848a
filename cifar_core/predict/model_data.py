"""The data a model needs: a data folder's images narrowed to the model's classes, labelled in its output
order, with its run's train/val/test carve when asked for.

Training, calibration, the pages' test and training sets and the CLI's commands all load it here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from cifar_core.config import TrainConfig
from cifar_core.data import loader as data_lib
from cifar_core.data.images import ImageData
from cifar_core.data.splits import Splits, make_splits

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class ModelData:
    data: ImageData  # the chosen classes, labelled in their order
    loaded: ImageData  # the data folder's images as loaded, every class: what its files are listed from
    data_dir: str | None
    splits: Splits | None  # the run's train/val/test carve, when asked for

    def files(self, split: str) -> list[str] | None:
        """The file behind each image of `data`'s `split` ("train" or "test"), in the same order; None when
        the images have no files of their own (python batches, Keras' download)."""
        return data_lib.split_files(self.data_dir, self.loaded, split, self.data.class_names)


def load_model_data(
    data_dir: str | None,
    class_names: Sequence[str] | None,
    *,
    skip_bad: bool = False,
    limit: int | None = None,
    progress: Progress | None = None,
    splits_of: TrainConfig | None = None,
    test_only: bool = False,
    in_data_order: bool = False,
) -> ModelData:
    """The images of `data_dir` (a folder or dataset name; None: Keras' CIFAR-10 download, so callers that
    must not download check first), narrowed to `class_names` (None or empty: every class).

    Args:
        limit: decode only the first `limit` training images of each class (`load_dataset`'s).
        splits_of: the run settings whose train/val/test carve to make (`val_fraction`, `seed`, `limit`).
        test_only: decode only the test split (`load_test_split`); the training arrays are then empty.
        in_data_order: order the classes as the data does (a training run's), not as given (a model's outputs).

    DataError when the folder cannot be loaded or lacks one of the classes.
    """
    if test_only:
        loaded = data_lib.load_test_split(data_dir, skip_bad=skip_bad, progress=progress)
    else:
        loaded = data_lib.load_dataset(data_dir, skip_bad=skip_bad, progress=progress, limit=limit)
    data = data_lib.select_classes(loaded, class_names, in_data_order=in_data_order) if class_names else loaded
    splits = None
    if splits_of is not None:
        splits = make_splits(data, val_fraction=splits_of.val_fraction, seed=splits_of.seed, limit=splits_of.limit)
    return ModelData(data, loaded, data_dir, splits)
