"""tf.distribute strategies: one device, several GPUs on one machine, or several machines.

`--batch-size` is the global batch: each of N replicas (all GPUs of all workers)
sees batch_size / N images per step, and a step's gradients are averaged over
all of them. Keep the learning rate for the global batch (scale it yourself,
linearly, if you grow the batch with the number of replicas).

With `multiworker`, every machine runs the same `train` command with its own
TF_CONFIG. Only the chief (task "chief", else worker 0) writes the run; the
others train in lockstep but keep their files in a throwaway folder.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from cifar_core.base import compat
from cifar_core.base import bounded_json
from cifar_core.base.errors import StudioError, readable


class DistributeError(StudioError, RuntimeError):
    """TF_CONFIG is missing or malformed for `--strategy multiworker`."""


def make_strategy(name: str) -> tf.distribute.Strategy:
    """'default' (one device), 'mirrored' (all local GPUs) or 'multiworker' (machines listed in TF_CONFIG).

    Must run before any other TensorFlow op: collective ops are configured at startup.
    """
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        worker_task()  # a clear error now rather than a gRPC one later
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        compat.patch_multiworker_reduce()
        return strategy
    return tf.distribute.get_strategy()


def worker_task() -> tuple[str, int]:
    """(task type, index) of this process in TF_CONFIG; DistributeError if TF_CONFIG is unusable."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise DistributeError("--strategy multiworker needs the TF_CONFIG environment variable (see README: Scale-out).")
    try:
        tf_config = bounded_json.loads(raw, what="TF_CONFIG")
        task = tf_config["task"]
        kind, index = str(task["type"]), int(task["index"])
        workers = tf_config["cluster"][kind]
    except (ValueError, KeyError, TypeError) as err:
        raise DistributeError(
            'TF_CONFIG must look like {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            f'"task": {{"type": "worker", "index": 0}}}}; got {readable(raw, 120)!r} ({type(err).__name__}: {readable(err, 200)}).'
        ) from err
    if not 0 <= index < len(workers):
        raise DistributeError(f"TF_CONFIG task index {index} is outside its cluster's {len(workers)} {kind} address(es).")
    return kind, index


def is_chief() -> bool:
    """True on the process that owns the run's files: the only process, TF_CONFIG's
    'chief' task, or worker 0 when the cluster names no chief (TensorFlow's convention)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return True
    kind, index = worker_task()
    if "chief" in bounded_json.loads(raw, what="TF_CONFIG")["cluster"]:
        return kind == "chief"
    return kind == "worker" and index == 0


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard by element across workers.

    Our datasets come from in-memory arrays (from_tensor_slices), which have no files
    to split, so the default AUTO policy would fall back to DATA with a warning; say
    it outright. Each worker still batches the global batch and keeps its share.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def prepare_model(model, strategy: tf.distribute.Strategy) -> None:
    """Make a freshly built model train correctly on several replicas.

    BatchNormalization normally normalises, and updates its moving statistics, with
    each replica's own slice of the batch, so every worker would end with different
    statistics. Synchronised, it uses the global batch's moments: the same numbers
    on every worker, and the ones a single machine would compute.
    """
    if strategy.num_replicas_in_sync > 1:
        for layer in _layers(model):
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.synchronized = True
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        compat.patch_symbolic_build(model, strategy)


def _layers(model) -> list:
    found = []
    for layer in model.layers:
        found.append(layer)
        if hasattr(layer, "layers"):
            found += _layers(layer)
    return found
