"""Weight EMA that is evaluated with its own BatchNorm statistics.

Keras' `use_ema` averages only the trainable weights. The BatchNorm moving
statistics are not weights to average: they describe the activations of the raw
weights, and under the averaged weights the activations differ. Evaluated with
the raw weights' statistics, an averaged VGG16-BN can score at chance. So, as
SWA does (Izmailov et al., 2018), every time the average is swapped in, each
BatchNorm layer's statistics are measured again under the averaged weights.
"""

from __future__ import annotations

import keras
import numpy as np

from cifar_core.data import pipeline
from cifar_core.config import TrainConfig


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The BatchNorm layers of `model`, nested models included, that training mode updates (trainable ones)."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def training_forward(model: keras.Model):
    """`model` called in training mode, compiled once: for `recompute_batchnorm`, which sets every momentum to 0 first."""
    import tensorflow as tf

    return tf.function(lambda x: model(x, training=True))


def recompute_batchnorm(model: keras.Model, batches, forward=None) -> None:
    """Set each trainable BatchNorm layer's moving mean and variance to its input's statistics over `batches`.

    `batches` yields model inputs (or (inputs, labels) pairs), all of one size. Each is
    run in training mode, so that every layer normalizes with its batch statistics,
    as in training. The statistics are pooled exactly: mean of the batch means, and
    mean of the batch variances plus the variance of the batch means. `forward`: the
    training-mode call to use (`training_forward(model)` to reuse a compiled one);
    eager calls by default.
    """
    layers = batchnorm_layers(model)
    if not layers:
        return
    forward = forward or (lambda x: model(x, training=True))
    momenta = [layer.momentum for layer in layers]
    sums = [[0.0, 0.0, 0.0] for _ in layers]  # per layer: sum of means, of variances, of squared means
    count = 0
    try:
        for layer in layers:
            layer.momentum = 0.0  # each call then leaves this batch's own statistics in the moving ones
        for batch in batches:
            forward(batch[0] if isinstance(batch, tuple) else batch)
            count += 1
            for total, layer in zip(sums, layers):
                mean = keras.ops.convert_to_numpy(layer.moving_mean).astype(np.float64)
                total[0] = total[0] + mean
                total[1] = total[1] + keras.ops.convert_to_numpy(layer.moving_variance).astype(np.float64)
                total[2] = total[2] + mean**2
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    if not count:
        raise ValueError("recompute_batchnorm needs at least one batch")
    for (mean_sum, var_sum, square_sum), layer in zip(sums, layers):
        mean = mean_sum / count
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var_sum / count + np.maximum(square_sum / count - mean**2, 0.0))


class SwapEMAWeights(keras.callbacks.SwapEMAWeights):
    """Keras' SwapEMAWeights that also gives the averaged weights BatchNorm statistics of their own.

    While the average is in the model (validation, epoch end, and after `fit`), the
    BatchNorm layers hold statistics measured under it over `batches` (a finite,
    re-iterable dataset of `full_model`'s inputs); while the raw weights are back,
    their own statistics are. The measurement is redone only when the optimizer has
    stepped since the last one. `full_model` is the model whose part is fitted (the
    head alone on cached features): its frozen layers keep their statistics.
    """

    def __init__(self, full_model: keras.Model, batches, swap_on_epoch: bool = False):
        super().__init__(swap_on_epoch=swap_on_epoch)
        self.full_model, self.batches = full_model, batches
        self._forward = training_forward(full_model)
        self._raw_stats: list[tuple[np.ndarray, np.ndarray]] | None = None
        self._ema_stats: tuple[int, list[tuple[np.ndarray, np.ndarray]]] | None = None

    def _stats(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(keras.ops.convert_to_numpy(layer.moving_mean), keras.ops.convert_to_numpy(layer.moving_variance))
                for layer in batchnorm_layers(self.full_model)]

    def _set_stats(self, stats: list[tuple[np.ndarray, np.ndarray]]) -> None:
        for layer, (mean, variance) in zip(batchnorm_layers(self.full_model), stats):
            layer.moving_mean.assign(mean)
            layer.moving_variance.assign(variance)

    def _after_swap(self) -> None:
        if self._ema_weights_in_model and self._raw_stats is None:
            self._raw_stats = self._stats()
            step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            if self._ema_stats is not None and self._ema_stats[0] == step:
                self._set_stats(self._ema_stats[1])
            else:
                recompute_batchnorm(self.full_model, self.batches, self._forward)
                self._ema_stats = (step, self._stats())
        elif not self._ema_weights_in_model and self._raw_stats is not None:
            self._set_stats(self._raw_stats)
            self._raw_stats = None

    def on_epoch_begin(self, epoch, logs=None):
        super().on_epoch_begin(epoch, logs)
        self._after_swap()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        self._after_swap()

    def on_test_begin(self, logs=None):
        super().on_test_begin(logs)
        self._after_swap()

    def on_test_end(self, logs=None):
        super().on_test_end(logs)
        self._after_swap()


# Images whose BatchNorm statistics the average is given: enough for the per-channel
# means and variances to settle, few enough to cost a fraction of an epoch.
RECOMPUTE_IMAGES = 2048


def ema_callbacks(config: TrainConfig, full_model: keras.Model, x_train: np.ndarray, y_train: np.ndarray) -> list[keras.callbacks.Callback]:
    """With a weight EMA: swap the averaged weights, with their own BatchNorm statistics, in for validation and at each epoch's end.

    Put first among a phase's callbacks, so that the checkpoint saved at an epoch's end
    holds the averaged weights the validation accuracy was measured on. The statistics
    come from a fixed sample of `RECOMPUTE_IMAGES` training images, unaugmented.
    """
    if not config.ema:
        return []
    sample = np.random.default_rng(config.seed).permutation(len(x_train))[:RECOMPUTE_IMAGES]
    batches = pipeline.make_dataset(x_train[sample], y_train[sample], config.batch_size, training=False,
                                    input_size=config.input_size, num_classes=full_model.output.shape[-1])
    return [SwapEMAWeights(full_model, batches, swap_on_epoch=True)]
