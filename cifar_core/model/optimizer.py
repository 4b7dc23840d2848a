"""The optimizer of a training phase: its learning-rate schedule, weight decay, BatchNorm-bias rate and weight EMA."""

from __future__ import annotations

import keras

from cifar_core.config import TrainConfig


@keras.saving.register_keras_serializable(package="cifar_core")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-linear rate: from `peak / 10` up to `peak` over `warmup_steps`, then down to 0 at `total_steps`."""

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        self.peak, self.warmup_steps, self.total_steps = float(peak), int(warmup_steps), int(total_steps)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = max(self.warmup_steps, 1)
        rising = self.peak * (0.1 + 0.9 * step / warm)
        falling = self.peak * keras.ops.maximum(self.total_steps - step, 0.0) / max(self.total_steps - self.warmup_steps, 1)
        return keras.ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}


class WarmedUpEMA:
    """Optimizer mixin: the weight EMA's momentum at step t is min(ema_momentum, (1 + t) / (10 + t)).

    As TensorFlow's ExponentialMovingAverage with `num_updates`: early on the average
    covers only the last ~t/9 steps, so a short run's average does not hold the
    unstable first epochs (with Keras' constant momentum 0.998, a third of a 700-step
    run's average was its first epoch). From ~4,500 steps on it is Keras' EMA.
    """

    def _update_model_variables_moving_average(self, trainable_variables):
        step = keras.ops.cast(self.iterations, "float32")
        # 0 at the first step, as in Keras: the average starts at the weights.
        momentum = keras.ops.where(step > 0, keras.ops.minimum(self.ema_momentum, (1.0 + step) / (10.0 + step)), 0.0)
        for var, average in zip(trainable_variables, self._model_variables_moving_average):
            if average is not None:
                m = keras.ops.cast(momentum, var.dtype)
                average.assign(m * average + (1.0 - m) * var)


@keras.saving.register_keras_serializable(package="cifar_core")
class Adam(WarmedUpEMA, keras.optimizers.Adam):
    """Keras' Adam with the warmed-up weight EMA."""


@keras.saving.register_keras_serializable(package="cifar_core")
class AdamW(WarmedUpEMA, keras.optimizers.AdamW):
    """Keras' AdamW with the warmed-up weight EMA."""


@keras.saving.register_keras_serializable(package="cifar_core")
class RMSprop(WarmedUpEMA, keras.optimizers.RMSprop):
    """Keras' RMSprop with the warmed-up weight EMA."""


@keras.saving.register_keras_serializable(package="cifar_core")
class BatchNormBiasSGD(WarmedUpEMA, keras.optimizers.SGD):
    """Nesterov SGD that moves BatchNorm biases (`beta`) `bn_bias_lr` times faster than the other weights.

    airbench94 trains its BatchNorm biases at a much higher rate than the convolutions.
    Weight decay is left as it is: Keras applies it at the unscaled rate to every weight.
    """

    def __init__(self, *args, bn_bias_lr: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.bn_bias_lr = float(bn_bias_lr)
        self._boosted: set[int] = set()

    def build(self, variables):
        super().build(variables)
        # BatchNormalization names its offset "beta"; no other layer of these models does.
        self._boosted = {self._get_variable_index(v) for v in variables if v.name == "beta"}

    def update_step(self, gradient, variable, learning_rate):
        if self.bn_bias_lr != 1.0 and self._get_variable_index(variable) in self._boosted:
            learning_rate = learning_rate * self.bn_bias_lr
        super().update_step(gradient, variable, learning_rate)

    def get_config(self) -> dict:
        return {**super().get_config(), "bn_bias_lr": self.bn_bias_lr}


def make_optimizer(config: TrainConfig, lr: float, epochs: int, steps: int) -> keras.optimizers.Optimizer:
    """The configured optimizer for a phase of `epochs` x `steps` at peak rate `lr`, with its schedule.

    With `config.ema`, the optimizer also keeps an exponential moving average of the
    weights (Keras' `use_ema`, warmed up: `WarmedUpEMA`); `ema.ema_callbacks` makes
    validation and checkpoints use it, with BatchNorm statistics of its own.
    """
    rate: float | keras.optimizers.schedules.LearningRateSchedule = lr
    if config.schedule == "onecycle":
        rate = OneCycle(lr, min(config.warmup_epochs, max(epochs - 1, 0)) * steps, epochs * steps)
    if config.schedule == "cosine":
        warmup = min(config.warmup_epochs, max(epochs - 1, 0)) * steps
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=lr / 10 if warmup else lr,
            decay_steps=max(epochs * steps - warmup, 1),
            warmup_target=lr if warmup else None,
            warmup_steps=warmup,
        )
    wd = config.weight_decay or None
    ema = dict(use_ema=True, ema_momentum=config.ema) if config.ema else {}
    if config.optimizer == "sgd":
        return BatchNormBiasSGD(rate, momentum=config.momentum, nesterov=True, weight_decay=wd,
                                bn_bias_lr=config.bn_bias_lr, **ema)
    if config.optimizer == "adam":
        return AdamW(rate, weight_decay=wd, **ema) if wd else Adam(rate, **ema)
    return RMSprop(rate, weight_decay=wd, **ema)

