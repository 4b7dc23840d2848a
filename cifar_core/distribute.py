"""tf.distribute strategies: one device, several GPUs on one machine, or several machines.

`--batch-size` is the global batch: each of N replicas sees batch_size / N images
per step. Keep the learning rate for the global batch (scale it yourself, linearly,
if you grow the batch with the number of replicas).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy(name: str) -> tf.distribute.Strategy:
    """'default' (one device), 'mirrored' (all local GPUs) or 'multiworker' (machines listed in TF_CONFIG)."""
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise RuntimeError("--strategy multiworker needs the TF_CONFIG environment variable (see README: Scale-out).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True on the worker that owns the run's files: the only worker, or task 0 of TF_CONFIG's workers."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and int(task.get("index", 0)) == 0
