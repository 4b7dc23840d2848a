"""Keras' download of CIFAR-10 (keras.datasets.cifar10.load_data(), needs internet): the source when no data folder is given."""

from __future__ import annotations

import numpy as np

from cifar_core.data.classes import CLASS_NAMES
from cifar_core.data.images import SPLITS, DataError, ImageData, Progress
from cifar_core.data.layouts import LAYOUT_HELP
from cifar_core.data.layouts.base import Layout


class KerasDownload(Layout):
    """Never found in a folder; Keras keeps its own copy of the download, so the decode cache has no entry for it."""

    name = "keras"

    def classes(self, folder: None = None) -> tuple[str, ...]:
        return CLASS_NAMES

    def load(self, folder: None = None, *, skip_bad: bool = False, progress: Progress | None = None, limit: int | None = None,
             splits: tuple[str, ...] = SPLITS) -> ImageData:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data()
        except Exception as err:  # urllib/OSError/HTTP errors all mean "could not download"
            raise DataError(
                "No data folder was given and downloading CIFAR-10 with "
                f"keras.datasets.cifar10.load_data() failed ({type(err).__name__}: {err}).\n{LAYOUT_HELP}"
            ) from err
        return ImageData(x_train, y_train.reshape(-1).astype(np.int64), x_test, y_test.reshape(-1).astype(np.int64),
                         "keras.datasets.cifar10", CLASS_NAMES)


LAYOUT = KerasDownload()
