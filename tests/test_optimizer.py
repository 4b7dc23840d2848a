"""cifar_core.model.optimizer and cifar_core.model.ema: the optimizer choice, the schedules, the BatchNorm-bias rate and the weight EMA."""

import keras
import numpy as np
import pytest
from conftest import tiny_config

from cifar_core.data import loader as data_lib
from cifar_core.data.splits import make_splits
from cifar_core.model import optimizer as optimizer_lib
from cifar_core.config import ConfigError, TrainConfig
from cifar_core.model.ema import SwapEMAWeights, batchnorm_layers, ema_callbacks, recompute_batchnorm
from cifar_core.model.vgg import batchnorm_momentum, build_model, load_model
from cifar_core.model.optimizer import BatchNormBiasSGD, make_optimizer
from cifar_core.runs.store import RunStore
from cifar_core.training.trainer import train


@pytest.mark.parametrize(
    "optimizer, weight_decay, kind",
    [("sgd", 0.0, BatchNormBiasSGD), ("adam", 0.0, optimizer_lib.Adam), ("adam", 0.01, optimizer_lib.AdamW),
     ("rmsprop", 0.0, optimizer_lib.RMSprop)],
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


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "rmsprop"])
def test_ema_momentum_warms_up(tiny_data, optimizer):
    # Step t averages with momentum min(0.95, (1 + t) / (10 + t)); the first step starts at the weight.
    opt = make_optimizer(tiny_config(tiny_data, optimizer=optimizer, ema=0.95), 0.1, 1, 100)
    var = keras.Variable(np.zeros(1, "float32"))
    expected = None
    for t in range(60):
        opt.apply([keras.ops.ones((1,))], [var])
        value = float(keras.ops.convert_to_numpy(var)[0])
        m = 0.0 if t == 0 else min(0.95, (1 + t) / (10 + t))
        expected = value if expected is None else m * expected + (1 - m) * value
    assert float(keras.ops.convert_to_numpy(opt._model_variables_moving_average[0])[0]) == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(value, rel=1e-2)  # the average lags the weight


def _distance_from_init(tiny_data, tmp_path, keep: bool = False, **options):
    """How far a one-epoch run's checkpoint moved its first conv kernel from the initial one (and, with `keep`, its config and model).

    One epoch, so that both runs checkpoint the same step: with more, the best-validation
    checkpoint of one run may come from an earlier epoch than the other's.
    """
    config = tiny_config(tiny_data, epochs_head=0, epochs_finetune=1, finetune_freeze="none", optimizer="sgd",
                         finetune_lr=0.05, **options)
    summary = train(config, store=RunStore(tmp_path / str(options)))
    keras.utils.set_random_seed(config.seed)  # train() builds its model right after seeding, so this is its start
    start = build_model(config, batchnorm_momentum(summary["steps_per_epoch"]), num_classes=10)
    saved = load_model(f"{summary['run_dir']}/model.keras")
    first = lambda m: keras.ops.convert_to_numpy(m.get_layer("base").get_layer("block1_conv1").kernel)
    distance = float(np.linalg.norm(first(saved) - first(start)))
    return (distance, config, saved) if keep else distance


@pytest.mark.slow  # two trainings
def test_ema_run_checkpoints_the_average_with_its_own_batchnorm_statistics(tiny_data, tmp_path):
    raw = _distance_from_init(tiny_data, tmp_path)
    averaged, config, saved = _distance_from_init(tiny_data, tmp_path, ema=0.99, keep=True)
    # The checkpoint holds the average, which trails the raw weights (here 5% less far from the start).
    assert 0 < averaged < 0.98 * raw
    # Its BatchNorm statistics are measured under it, on the sample ema_callbacks draws.
    splits = make_splits(data_lib.load_dataset(config.data_dir), val_fraction=config.val_fraction, seed=config.seed)
    [callback] = ema_callbacks(config, saved, splits.x_train, splits.y_train)
    stats = lambda: [keras.ops.convert_to_numpy(v) for bn in batchnorm_layers(saved) for v in (bn.moving_mean, bn.moving_variance)]
    checkpointed = stats()
    recompute_batchnorm(saved, callback.batches)
    for got, want in zip(checkpointed, stats()):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _conv_bn_net(seed: int = 0) -> keras.Model:
    """Conv -> BatchNorm inside a nested model, then a small classifier: the shape of a base and head."""
    keras.utils.set_random_seed(seed)
    inner = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, name="conv"), keras.layers.BatchNormalization(name="bn")])
    x = keras.Input((8, 8, 3))
    y = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(keras.layers.ReLU()(inner(x))))
    return keras.Model(x, y)


def test_recompute_batchnorm_gives_the_statistics_of_the_current_weights():
    model = _conv_bn_net()
    images = np.random.default_rng(0).normal(2.0, 3.0, (32, 8, 8, 3)).astype("float32")
    [bn] = batchnorm_layers(model)  # found inside the nested model
    conv = model.layers[1].get_layer("conv")
    activations = keras.ops.convert_to_numpy(conv(images)).reshape(-1, 4)
    recompute_batchnorm(model, [images[:16], (images[16:], None)])  # two batches, bare or with labels
    # Pooled over both batches exactly: the statistics of all 32 images' activations.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_mean), activations.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bn.moving_variance), activations.var(0), rtol=1e-4)
    assert bn.momentum == pytest.approx(0.99)  # restored


def test_ema_callback_evaluates_the_average_with_its_own_batchnorm_statistics():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (64, 8, 8, 3)).astype("float32")
    y = keras.ops.convert_to_numpy(keras.ops.one_hot(rng.integers(0, 3, 64), 3))
    model = _conv_bn_net()
    model.compile(keras.optimizers.SGD(0.5, use_ema=True, ema_momentum=0.9), "categorical_crossentropy")
    [bn] = batchnorm_layers(model)
    callback = SwapEMAWeights(model, [x[:32], x[32:]], swap_on_epoch=True)
    model.fit(x, y, batch_size=16, epochs=2, callbacks=[callback], verbose=0)
    # The average is in the model now, and its statistics are those measured under it,
    # not the raw weights' moving averages.
    saved = keras.ops.convert_to_numpy(bn.moving_mean), keras.ops.convert_to_numpy(bn.moving_variance)
    raw_mean = callback._raw_stats[0][0]
    recompute_batchnorm(model, [x[:32], x[32:]])
    np.testing.assert_allclose(saved[0], keras.ops.convert_to_numpy(bn.moving_mean), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(saved[1], keras.ops.convert_to_numpy(bn.moving_variance), rtol=1e-5)
    assert not np.allclose(saved[0], raw_mean, atol=1e-3)
