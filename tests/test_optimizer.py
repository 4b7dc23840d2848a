"""cifar_core.optimizer: the optimizer choice, the schedules, the BatchNorm-bias rate and the weight EMA."""

import keras
import numpy as np
import pytest
from conftest import tiny_config

from cifar_core.config import ConfigError, TrainConfig
from cifar_core.model import batchnorm_momentum, build_model, load_model
from cifar_core.optimizer import BatchNormBiasSGD, make_optimizer
from cifar_core.runs import RunStore
from cifar_core.train import train


@pytest.mark.parametrize(
    "optimizer, weight_decay, kind",
    [("sgd", 0.0, BatchNormBiasSGD), ("adam", 0.0, keras.optimizers.Adam), ("adam", 0.01, keras.optimizers.AdamW),
     ("rmsprop", 0.0, keras.optimizers.RMSprop)],
)
def test_optimizer_choice(tiny_data, optimizer, weight_decay, kind):
    opt = make_optimizer(tiny_config(tiny_data, optimizer=optimizer, weight_decay=weight_decay, momentum=0.8), 0.1, 3, 10)
    assert type(opt) is kind
    assert float(opt.learning_rate) == pytest.approx(0.1)
    if optimizer == "sgd":
        assert opt.nesterov and opt.momentum == 0.8


def test_cosine_schedule_warms_up_then_decays_to_zero(tiny_data):
    opt = make_optimizer(tiny_config(tiny_data, schedule="cosine", warmup_epochs=1), 0.1, 3, 10)
    lrs = []
    for step in (0, 10, 20, 30):
        opt.iterations.assign(step)
        lrs.append(float(opt.learning_rate))
    assert lrs == pytest.approx([0.01, 0.1, 0.05, 0.0], abs=1e-6)


def test_onecycle_schedule_rises_linearly_then_falls_to_zero(tiny_data):
    opt = make_optimizer(tiny_config(tiny_data, schedule="onecycle", warmup_epochs=1), 0.1, 3, 10)
    lrs = []
    for step in (0, 5, 10, 20, 30):
        opt.iterations.assign(step)
        lrs.append(float(opt.learning_rate))
    assert lrs == pytest.approx([0.01, 0.055, 0.1, 0.05, 0.0], abs=1e-6)


def _one_step(bn_bias_lr):
    """Move a BatchNorm layer's scale and bias once, with a gradient of 1 at rate 0.1; -> (scale step, bias step)."""
    layer = keras.layers.BatchNormalization()
    layer.build((None, 4))
    opt = BatchNormBiasSGD(0.1, momentum=0.0, bn_bias_lr=bn_bias_lr)
    opt.apply([keras.ops.ones((4,)), keras.ops.ones((4,))], [layer.gamma, layer.beta])
    return 1.0 - keras.ops.convert_to_numpy(layer.gamma), -keras.ops.convert_to_numpy(layer.beta)


def test_batchnorm_biases_move_at_their_own_rate():
    scale_step, bias_step = _one_step(16.0)
    np.testing.assert_allclose(scale_step, 0.1, rtol=1e-6)  # every other weight keeps the rate
    np.testing.assert_allclose(bias_step, 1.6, rtol=1e-6)
    assert _one_step(1.0)[1] == pytest.approx(np.full(4, 0.1))


def test_optimizer_options_are_validated(tiny_data):
    with pytest.raises(ConfigError) as err:
        tiny_config(tiny_data, optimizer="adam", bn_bias_lr=4.0)
    assert "sgd optimizer only" in err.value.errors["bn_bias_lr"]
    for bad in (0.3, 1.0, -0.1, "x"):
        with pytest.raises(ConfigError) as err:
            TrainConfig(ema=bad).validate()
        assert "ema" in err.value.errors
    for bad in (0, -2.0, 5000):
        with pytest.raises(ConfigError) as err:
            TrainConfig(optimizer="sgd", bn_bias_lr=bad).validate()
        assert "bn_bias_lr" in err.value.errors


def test_ema_is_keras_own(tiny_data):
    opt = make_optimizer(tiny_config(tiny_data, ema=0.99), 0.1, 3, 10)
    assert opt.use_ema and opt.ema_momentum == pytest.approx(0.99)
    assert not make_optimizer(tiny_config(tiny_data), 0.1, 3, 10).use_ema


def _distance_from_init(tiny_data, tmp_path, **options) -> float:
    """How far a short run's checkpoint moved its first conv kernel from the initial one."""
    config = tiny_config(tiny_data, epochs_head=0, epochs_finetune=2, finetune_freeze="none", optimizer="sgd",
                         finetune_lr=0.05, **options)
    summary = train(config, store=RunStore(tmp_path / str(options)))
    keras.utils.set_random_seed(config.seed)  # train() builds its model right after seeding, so this is its start
    start = build_model(config, batchnorm_momentum(summary["steps_per_epoch"]), num_classes=10)
    saved = load_model(f"{summary['run_dir']}/model.keras")
    first = lambda m: keras.ops.convert_to_numpy(m.get_layer("base").get_layer("block1_conv1").kernel)
    return float(np.linalg.norm(first(saved) - first(start)))


def test_ema_run_checkpoints_the_averaged_weights(tiny_data, tmp_path):
    # Keras starts the average at the weights after the first step; at momentum 0.999 it
    # barely moves from there in a dozen steps, while the raw weights keep going.
    raw = _distance_from_init(tiny_data, tmp_path)
    averaged = _distance_from_init(tiny_data, tmp_path, ema=0.999)
    assert raw > 0
    assert averaged < 0.5 * raw
