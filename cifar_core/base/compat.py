"""Every use of a private Keras or TensorFlow API, in one place, with the versions it was checked against.

Each is a small function with the reason it exists; when Keras or TensorFlow is
upgraded, this file is what to re-check (the tests that cover each are named).
Checked against: tensorflow 2.21.0, keras 3.15.1 (requirements.txt).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Iterator

import keras
import tensorflow as tf


def weights_h5(model: Any) -> bytes:
    """What `model.save_weights` writes (weights and optimizer state), made in memory.

    HDF5 never writes to disk here: when its write fails half-way (a full disk),
    h5py keeps the broken file open and the process crashes as it exits.
    """
    # Keras' own steps of save_weights, with an in-memory file: it has no public way to take one.
    from keras.src.saving.saving_lib import H5IOStore, _save_state

    buffer = io.BytesIO()
    store = H5IOStore(buffer, mode="w")
    _save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    store.close()
    return buffer.getvalue()


def freeze(function: tf.types.experimental.ConcreteFunction):
    """A concrete function with the model's variables folded in as constants: TensorFlow's own graph-freezing
    tool (behind its SavedModel and TFLite converters), which has no public alias. Used for fast single-image
    inference and for the TFLite export, which cannot read Keras 3's resource variables (tests/test_export.py,
    tests/test_inference.py)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(function)


def initial_epoch(model: keras.Model) -> int | None:
    """Where Keras' `fit` starts: set by BackupAndRestore (and by the studio's backups) as `_initial_epoch`."""
    return getattr(model, "_initial_epoch", None)


def set_initial_epoch(model: keras.Model, epoch: int | None) -> None:
    """Set where the next `fit` starts, as BackupAndRestore does; None clears it (Keras never does, so a later
    phase's fit on the same model would skip that many epochs). Covered by tests/test_resilience.py."""
    model._initial_epoch = epoch


@contextlib.contextmanager
def own_pending_variables() -> Iterator[None]:
    """Keras keeps the variables created in a StatelessScope (declared, not allocated) on a global list until
    the next scope allocates them all; a dry build must take its own off again (tests/test_model_cost.py,
    tests/test_hostile_input.py)."""
    from keras.src.backend.common import global_state

    pending = list(global_state.get_global_attribute("uninitialized_variables", [], set_to_default=True))
    try:
        yield
    finally:
        global_state.set_global_attribute("uninitialized_variables", pending)


def patch_symbolic_build(model, strategy: tf.distribute.Strategy) -> None:
    """Work around Keras 3's `fit` under MultiWorkerMirroredStrategy (keras-team/keras#20585).

    Before its first step, Keras averages the first distributed batch across workers
    only to learn its shapes, and that all-reduce fails on a (x, y) structure. One
    worker's local share has the same shapes, so build from that instead.
    """

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tf.nest.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v,
                    batch,
                )
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build


def patch_multiworker_reduce() -> None:
    """Second half of the keras-team/keras#20585 workaround.

    Keras averages each step's scalar logs (loss, metrics) across workers with
    `reduce(axis=0)`, which fails on a scalar; averaging the scalars themselves
    (axis=None) is what the single-machine path does.
    """
    from keras.src.backend.tensorflow import trainer

    original = trainer.reduce_per_replica
    if getattr(original, "_multiworker_fix", False):
        return

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    reduce_per_replica._multiworker_fix = True
    trainer.reduce_per_replica = reduce_per_replica
