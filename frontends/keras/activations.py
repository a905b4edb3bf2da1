"""Activations: every built-in of `keras.activations` (Keras 2 and 3), and the activation layers
(Activation, ReLU, LeakyReLU, PReLU, ELU, Softmax, ThresholdedReLU).

An activation in a config is a name ("relu") or, in Keras 3, a serialized function
(`{"class_name": "function", "config": "relu", ...}`); anything else is a custom object.
Keras 2 and 3 differ in `hard_sigmoid` (Keras 2: clip(0.2 x + 0.5), Keras 3: relu6(x + 3) / 6).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from neo.ir import Value

from .context import LayerContext, axes_list
from .registry import converter

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _softsign(cx: LayerContext, x: Value) -> Value:
    return cx.op("div", x, cx.binary("add", cx.op("abs", x), 1.0))


def _mish(cx: LayerContext, x: Value) -> Value:
    return cx.op("mul", x, cx.op("tanh", cx.op("softplus", x)))


def _hard_sigmoid(cx: LayerContext, x: Value) -> Value:
    if cx.major >= 3:
        return cx.op("hard_sigmoid", x, alpha=1.0 / 6.0, beta=0.5)
    return cx.op("hard_sigmoid", x, alpha=0.2, beta=0.5)


def _celu(cx: LayerContext, x: Value, alpha: float = 1.0) -> Value:
    # max(x, 0) + min(0, alpha * (exp(x / alpha) - 1))
    neg = cx.binary("mul", cx.binary("sub", cx.op("exp", cx.binary("div", x, alpha)), 1.0), alpha)
    return cx.op("add", cx.op("relu", x), cx.binary("minimum", neg, 0.0))


def _glu(cx: LayerContext, x: Value, axis: int = -1) -> Value:
    ax = cx.axis(axis, x.type.rank)
    half = x.shape[ax] // 2
    a, b = cx.slice(x, ax, 0, half), cx.slice(x, ax, half, 2 * half)
    return cx.op("mul", a, cx.op("sigmoid", b))


def _shrink(cx: LayerContext, x: Value, threshold: float, soft: bool) -> Value:
    big = cx.binary("greater", cx.op("abs", x), threshold)
    if not soft:
        return cx.op("where", big, x, cx.tensor(0.0, x))
    shifted = cx.binary("sub", x, cx.op("mul", cx.op("sign", x), cx.tensor(threshold, x)))
    return cx.op("where", big, shifted, cx.tensor(0.0, x))


def _sparse_plus(cx: LayerContext, x: Value) -> Value:
    # 0 for x <= -1, x for x >= 1, (x + 1)^2 / 4 between
    mid = cx.binary("mul", cx.op("mul", *(2 * [cx.binary("add", x, 1.0)])), 0.25)
    out = cx.op("where", cx.binary("greater_equal", x, 1.0), x, mid)
    return cx.op("where", cx.binary("less_equal", x, -1.0), cx.tensor(0.0, x), out)


def _squareplus(cx: LayerContext, x: Value, b: float = 4.0) -> Value:
    root = cx.op("sqrt", cx.binary("add", cx.op("mul", x, x), float(b)))
    return cx.binary("mul", cx.op("add", x, root), 0.5)


# name -> fn(cx, x) (built-ins taking only x; parameters at their defaults)
ACTIVATIONS: dict[str, Callable[[LayerContext, Value], Value]] = {
    "linear": lambda cx, x: x,
    "relu": lambda cx, x: cx.op("relu", x),
    "relu6": lambda cx, x: cx.op("clip", x, min=0.0, max=6.0),
    "sigmoid": lambda cx, x: cx.op("sigmoid", x),
    "tanh": lambda cx, x: cx.op("tanh", x),
    "softmax": lambda cx, x: cx.op("softmax", x, axis=x.type.rank - 1),
    "log_softmax": lambda cx, x: cx.op("log_softmax", x, axis=x.type.rank - 1),
    "softplus": lambda cx, x: cx.op("softplus", x),
    "softsign": _softsign,
    "exponential": lambda cx, x: cx.op("exp", x),
    "elu": lambda cx, x: cx.op("elu", x, alpha=1.0),
    "selu": lambda cx, x: cx.binary("mul", cx.op("elu", x, alpha=SELU_ALPHA), SELU_SCALE),
    "celu": _celu,
    "gelu": lambda cx, x: cx.op("gelu", x, approximate="none"),
    "swish": lambda cx, x: cx.op("silu", x),
    "silu": lambda cx, x: cx.op("silu", x),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda cx, x: cx.op("hard_swish", x),
    "hard_swish": lambda cx, x: cx.op("hard_swish", x),
    "hard_tanh": lambda cx, x: cx.op("clip", x, min=-1.0, max=1.0),
    "leaky_relu": lambda cx, x: cx.op("leaky_relu", x, alpha=0.2),
    "log_sigmoid": lambda cx, x: cx.op("neg", cx.op("softplus", cx.op("neg", x))),
    "mish": _mish,
    "glu": _glu,
    "hard_shrink": lambda cx, x: _shrink(cx, x, 0.5, soft=False),
    "soft_shrink": lambda cx, x: _shrink(cx, x, 0.5, soft=True),
    "tanh_shrink": lambda cx, x: cx.op("sub", x, cx.op("tanh", x)),
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": lambda cx, x: cx.op("clip", cx.binary("mul", cx.binary("add", x, 1.0), 0.5),
                                          min=0.0, max=1.0),
    "squareplus": _squareplus,
}


def activation_name(spec: Any) -> str | None:
    """The built-in name of an activation config entry, None for a custom object."""
    if spec is None:
        return "linear"
    if isinstance(spec, str):
        name = spec
    elif isinstance(spec, dict):
        # Keras 3 serializes functions as {"module": "keras.activations", "class_name":
        # "function", "config": "relu", "registered_name": "function"}
        module = str(spec.get("module") or "")
        if spec.get("class_name") != "function" or not module.startswith(("keras", "tf_keras")):
            return None
        name = spec.get("config")
        if not isinstance(name, str):
            return None
    else:
        return None
    name = name.rsplit(">", 1)[-1]
    return name if name in ACTIVATIONS else None


def apply_activation(cx: LayerContext, x: Value, spec: Any) -> Value:
    name = activation_name(spec)
    if name is None:
        shown = spec if isinstance(spec, str) else (spec or {}).get("config", spec)
        cx.unsupported(f"activation {shown!r} is not a Keras built-in (custom objects are not "
                       f"converted); built-ins: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name](cx, x)


# -- layers --------------------------------------------------------------------------------------
@converter("Activation")
def Activation(cx: LayerContext, inputs: Value, *, activation="linear"):
    return cx.activation(inputs, activation)


@converter("ReLU")
def ReLU(cx: LayerContext, inputs: Value, *, max_value=None, negative_slope=0.0, threshold=0.0):
    # max_value if x >= max_value; x if threshold <= x < max_value; slope * (x - threshold) else
    x = inputs
    slope, th = float(negative_slope or 0.0), float(threshold or 0.0)
    if slope == 0.0 and th == 0.0:
        y = cx.op("relu", x)
    elif th == 0.0:
        y = cx.op("leaky_relu", x, alpha=slope)
    else:
        low = cx.binary("mul", cx.binary("sub", x, th), slope)
        y = cx.op("where", cx.binary("greater_equal", x, th), x, low)
    if max_value is not None:
        y = cx.binary("minimum", y, float(max_value))
    return y


@converter("LeakyReLU")
def LeakyReLU(cx: LayerContext, inputs: Value, *, alpha=None, negative_slope=None):
    slope = negative_slope if negative_slope is not None else alpha
    return cx.op("leaky_relu", inputs, alpha=0.3 if slope is None else float(slope))


@converter("ELU")
def ELU(cx: LayerContext, inputs: Value, *, alpha=1.0):
    return cx.op("elu", inputs, alpha=float(alpha))


@converter("ThresholdedReLU")
def ThresholdedReLU(cx: LayerContext, inputs: Value, *, theta=1.0):
    x = inputs
    return cx.op("where", cx.binary("greater", x, float(theta)), x, cx.tensor(0.0, x))


@converter("PReLU")
def PReLU(cx: LayerContext, inputs: Value, *, shared_axes=None):
    # max(x, 0) + alpha * min(x, 0); alpha has the input's shape without the batch, with 1 on
    # the shared axes
    x = inputs
    (alpha,) = cx.expect_weights(["alpha"])
    shape = list(x.shape[1:])
    for a in axes_list(shared_axes) if shared_axes is not None else []:
        shape[a - 1] = 1
    if int(np.prod(alpha.shape)) != int(np.prod(shape)):
        cx.invalid("alpha", list(alpha.shape), f"a weight of shape {shape}")
    a = cx.weight(alpha.reshape(shape))
    return cx.op("add", cx.op("relu", x), cx.op("mul", a, cx.binary("minimum", x, 0.0)))


@converter("Softmax")
def Softmax(cx: LayerContext, inputs: Value, mask: Value | None = None, *, axis=-1):
    x = inputs
    axes = [cx.axis(a, x.type.rank) for a in axes_list(axis)]
    if mask is not None:
        # Keras adds a large negative number where the mask is False
        bias = cx.binary("mul", cx.binary("sub", 1.0, cx.cast(mask, x.dtype)), -1e9)
        x = cx.op("add", x, bias)
    if len(axes) == 1:
        return cx.op("softmax", x, axis=axes[0])
    # exp(x - logsumexp over the axes)
    m = cx.op("reduce_max", x, axes=tuple(axes), keepdims=1)
    e = cx.op("exp", cx.op("sub", x, m))
    return cx.op("div", e, cx.op("reduce_sum", e, axes=tuple(axes), keepdims=1))

