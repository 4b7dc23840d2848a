"""What a model costs to run on one image -- activation memory and FLOPs -- read from a dry-built graph.

A tiny `.keras` file can declare a cheap-to-store but ruinous-to-run graph (say
`UpSampling2D(300)` on a 32x32 input: gigabytes of activations per image), which
the weight-size checks in `safe_h5` cannot see. The limits are set from the
studio's own largest architecture (VGG16-BN at width 2, 224x224 input, two
8192-unit head layers: 323 MiB and 123 GFLOP per image, see
tests/test_model_cost.py) with a 2x margin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

MAX_ACTIVATION_BYTES = 650 << 20
MAX_FLOPS = 250e9


@dataclass(frozen=True)
class ModelCost:
    activation_bytes: int  # every layer's float32 output for one image, added up (an upper bound of the live memory)
    flops: float           # multiply-adds counted twice; other layers one operation per output value


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer


def _elements(tensor) -> int | None:
    dims = tuple(tensor.shape)[1:]
    return None if any(d is None for d in dims) else math.prod(dims)


def per_image_cost(model: keras.Model) -> ModelCost | None:
    """The cost of one image through `model` (built, e.g. in a StatelessScope); None if a layer's output size
    is not fixed (an input of any size)."""
    act, flops = 0, 0.0
    for layer in _leaf_layers(model):
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        for out in outputs:
            n = _elements(out)
            if n is None:
                return None
            act += 4 * n
            if isinstance(layer, keras.layers.Conv2D):
                flops += 2.0 * n * math.prod(layer.kernel_size) * layer.input.shape[-1] / layer.groups
            elif isinstance(layer, keras.layers.Dense):
                flops += 2.0 * n * layer.input.shape[-1]
            elif not isinstance(layer, keras.layers.InputLayer):
                flops += n
    return ModelCost(act, flops)


def cost_problem(model: keras.Model) -> str | None:
    """Why running `model` on one image would cost more than the studio allows, in words; None if it is within limits."""
    cost = per_image_cost(model)
    if cost is None:
        return "its input size is not fixed, so what it computes per image cannot be bounded"
    if cost.activation_bytes > MAX_ACTIVATION_BYTES:
        return (f"one image through it takes {cost.activation_bytes / 2**20:,.0f} MiB of activations; "
                f"the studio's largest network takes under {MAX_ACTIVATION_BYTES / 2**20 / 2:,.0f} MiB")
    if cost.flops > MAX_FLOPS:
        return (f"one image through it takes {cost.flops / 1e9:,.0f} GFLOP; "
                f"the studio's largest network takes under {MAX_FLOPS / 1e9 / 2:,.0f} GFLOP")
    return None
