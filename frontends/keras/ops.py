"""Tensor operations inside functional models: Keras 3 `keras.ops.*` (recorded as operations,
their config holding the constructor arguments) and Keras 2 `TFOpLambda` layers (`tf.math.add`,
`x + 3.0` as `tf.__operators__.add`, `x[:, 1:]` as `tf.__operators__.getitem`), whose call
arguments carry the TensorFlow function's keyword arguments.

One converter serves both where they mean the same; parameters take TensorFlow's names (a Keras 3
operation passes its tensors positionally, so the names do not matter there).
"""
from __future__ import annotations

import math
from typing import Any

from neo.ir import Value

from .context import LayerContext, axes_list
from .graph import SliceSpec
from .registry import converter

_DTYPES = {"float32", "float16", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"}


# -- elementwise -----------------------------------------------------------------------------------
def _binary(op: str):
    def fn(cx: LayerContext, x, y, *, name=None):
        return cx.binary(op, x, y)

    return fn


for _op, _keras, _tf in (
        ("add", ("Add",), ("math.add", "__operators__.add", "math.add_v2")),
        ("sub", ("Subtract",), ("math.subtract", "__operators__.sub")),
        ("mul", ("Multiply",), ("math.multiply", "__operators__.mul")),
        ("div", ("Divide", "TrueDivide"), ("math.truediv", "math.divide", "__operators__.truediv")),
        ("maximum", ("Maximum",), ("math.maximum",)),
        ("minimum", ("Minimum",), ("math.minimum",)),
        ("pow", ("Power",), ("math.pow", "__operators__.pow"))):
    converter(*(f"keras.ops.{k}" for k in _keras), *(f"tf.{t}" for t in _tf))(_binary(_op))


def _unary(fn_of):
    def fn(cx: LayerContext, x, *, name=None):
        return fn_of(cx, cx.tensor(x))

    return fn


_UNARY: dict[str, tuple[tuple[str, ...], tuple[str, ...], Any]] = {
    "relu": (("Relu",), ("nn.relu",), lambda cx, x: cx.op("relu", x)),
    "relu6": (("Relu6",), ("nn.relu6",), lambda cx, x: cx.op("clip", x, min=0.0, max=6.0)),
    "sigmoid": (("Sigmoid",), ("math.sigmoid", "nn.sigmoid"), lambda cx, x: cx.op("sigmoid", x)),
    "tanh": (("Tanh",), ("math.tanh", "nn.tanh"), lambda cx, x: cx.op("tanh", x)),
    "exp": (("Exp",), ("math.exp",), lambda cx, x: cx.op("exp", x)),
    "log": (("Log",), ("math.log",), lambda cx, x: cx.op("log", x)),
    "sqrt": (("Sqrt",), ("math.sqrt",), lambda cx, x: cx.op("sqrt", x)),
    "rsqrt": (("Rsqrt",), ("math.rsqrt",), lambda cx, x: cx.op("reciprocal", cx.op("sqrt", x))),
    "square": (("Square",), ("math.square",), lambda cx, x: cx.op("mul", x, x)),
    "neg": (("Negative",), ("math.negative", "__operators__.neg"), lambda cx, x: cx.op("neg", x)),
    "abs": (("Absolute", "Abs"), ("math.abs",), lambda cx, x: cx.op("abs", x)),
    "erf": (("Erf",), ("math.erf",), lambda cx, x: cx.op("erf", x)),
    "softplus": (("Softplus",), ("math.softplus", "nn.softplus"),
                 lambda cx, x: cx.op("softplus", x)),
    "silu": (("Silu", "Swish"), ("nn.silu", "nn.swish"), lambda cx, x: cx.op("silu", x)),
    "hard_sigmoid": (("HardSigmoid",), (), lambda cx, x: cx.activation(x, "hard_sigmoid")),
    "hard_silu": (("HardSilu", "HardSwish"), (), lambda cx, x: cx.op("hard_swish", x)),
    "selu": (("Selu",), ("nn.selu",), lambda cx, x: cx.activation(x, "selu")),
}
for _keras, _tf, _fn in _UNARY.values():
    converter(*(f"keras.ops.{k}" for k in _keras), *(f"tf.{t}" for t in _tf))(_unary(_fn))


@converter("keras.ops.Gelu")
def gelu(cx: LayerContext, features, *, approximate=True):
    # keras.ops.gelu defaults to the tanh approximation, tf.nn.gelu to erf
    return cx.op("gelu", features, approximate="tanh" if approximate else "none")


@converter("tf.nn.gelu")
def tf_gelu(cx: LayerContext, features, *, approximate=False, name=None):
    return cx.op("gelu", features, approximate="tanh" if approximate else "none")


@converter("keras.ops.LeakyRelu", "tf.nn.leaky_relu")
def leaky_relu(cx: LayerContext, features, *, negative_slope=None, alpha=None, name=None):
    slope = negative_slope if negative_slope is not None else alpha
    return cx.op("leaky_relu", features, alpha=0.2 if slope is None else float(slope))


@converter("keras.ops.Elu", "tf.nn.elu")
def elu(cx: LayerContext, features, *, alpha=1.0, name=None):
    return cx.op("elu", features, alpha=float(alpha))


@converter("keras.ops.Softmax", "tf.nn.softmax", "tf.math.softmax")
def softmax(cx: LayerContext, logits, *, axis=-1, name=None):
    return cx.op("softmax", logits, axis=cx.axis(-1 if axis is None else axis, logits.type.rank))


@converter("keras.ops.LogSoftmax", "tf.nn.log_softmax", "tf.math.log_softmax")
def log_softmax(cx: LayerContext, logits, *, axis=-1, name=None):
    return cx.op("log_softmax", logits,
                 axis=cx.axis(-1 if axis is None else axis, logits.type.rank))


@converter("keras.ops.Clip", "tf.clip_by_value")
def clip_by_value(cx: LayerContext, t, *, clip_value_min=None, clip_value_max=None, x_min=None,
                  x_max=None, name=None):
    lo = clip_value_min if clip_value_min is not None else x_min
    hi = clip_value_max if clip_value_max is not None else x_max
    return cx.op("clip", t, min=None if lo is None else float(lo),
                 max=None if hi is None else float(hi))


@converter("keras.ops.Cast", "tf.cast")
def cast(cx: LayerContext, x, *, dtype, name=None):
    name = dtype if isinstance(dtype, str) else str(dtype)
    name = name.removeprefix("tf.").removeprefix("<dtype: '").removesuffix("'>")
    if name not in _DTYPES:
        cx.unsupported_attribute("dtype", dtype, ", ".join(sorted(_DTYPES)))
    return cx.cast(x, name)


# -- reductions ----------------------------------------------------------------------------------
def _reduce(op: str):
    def fn(cx: LayerContext, input_tensor, *, axis=None, keepdims=False, initial=None,
           name=None):
        if initial is not None:
            cx.unsupported_attribute("initial", initial, "None")
        x = input_tensor
        axes = tuple(range(x.type.rank)) if axis is None else tuple(
            sorted(cx.axis(a, x.type.rank) for a in axes_list(axis)))
        return cx.op(op, x, axes=axes, keepdims=int(bool(keepdims)))

    return fn


for _op, _keras, _tf in (("reduce_mean", "Mean", "math.reduce_mean"),
                         ("reduce_sum", "Sum", "math.reduce_sum"),
                         ("reduce_max", "Max", "math.reduce_max"),
                         ("reduce_min", "Min", "math.reduce_min"),
                         ("reduce_prod", "Prod", "math.reduce_prod")):
    converter(f"keras.ops.{_keras}", f"tf.{_tf}")(_reduce(_op))


# -- shapes --------------------------------------------------------------------------------------
@converter("keras.ops.Concatenate", "tf.concat")
def concat(cx: LayerContext, *values, axis=0, name=None):
    xs = [cx.tensor(v) for v in values]
    xs = [cx.cast(x, xs[0].dtype) for x in xs]
    return cx.concat(xs, cx.axis(axis, xs[0].type.rank))


@converter("keras.ops.Reshape", "tf.reshape")
def reshape(cx: LayerContext, tensor, *, shape=None, newshape=None, name=None):
    x = tensor
    dims = [int(d) for d in (shape if shape is not None else newshape)]
    total = math.prod(x.shape)
    if -1 in dims:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = total // known if known else 0
    if math.prod(dims) != total:
        cx.invalid("shape", dims, f"{total} elements (the input is {list(x.shape)})")
    return cx.reshape(x, dims)


@converter("keras.ops.Transpose", "tf.transpose", "tf.compat.v1.transpose")
def transpose(cx: LayerContext, a, *, perm=None, axes=None, conjugate=False, name=None):
    p = perm if perm is not None else axes
    r = a.type.rank
    return cx.transpose(a, tuple(range(r - 1, -1, -1)) if p is None else
                        tuple(cx.axis(i, r) for i in p))


@converter("keras.ops.ExpandDims", "tf.expand_dims")
def expand_dims(cx: LayerContext, input, *, axis, name=None):
    x = input
    ax = cx.axis(axis, x.type.rank + 1)
    return cx.reshape(x, (*x.shape[:ax], 1, *x.shape[ax:]))


@converter("keras.ops.Squeeze", "tf.squeeze", "tf.compat.v1.squeeze")
def squeeze(cx: LayerContext, input, *, axis=None, squeeze_dims=None, name=None):
    x = input
    axis = squeeze_dims if axis is None else axis
    axes = [d for d in range(x.type.rank) if x.shape[d] == 1] if axis is None else [
        cx.axis(a, x.type.rank) for a in axes_list(axis)]
    return cx.reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


@converter("keras.ops.Matmul", "tf.linalg.matmul", "tf.matmul", "tf.__operators__.matmul")
def matmul(cx: LayerContext, a, b, *, transpose_a=False, transpose_b=False, name=None):
    a, b = cx.tensor(a), cx.tensor(b)

    def t(v: Value) -> Value:
        r = v.type.rank
        return cx.transpose(v, tuple(range(r - 2)) + (r - 1, r - 2))

    return cx.op("matmul", t(a) if transpose_a else a, t(b) if transpose_b else b)


@converter("keras.ops.GetItem", "tf.__operators__.getitem")
def getitem(cx: LayerContext, tensor, *, slice_spec=None, key=None):
    """x[...]: slices with positive steps, integers, None (a new axis) and one Ellipsis."""
    x = tensor
    spec = slice_spec if slice_spec is not None else key
    items = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    items = [Ellipsis if it in ("...", "Ellipsis") else it for it in items]
    if items.count(Ellipsis) > 1:
        cx.invalid("slice_spec", spec, "at most one Ellipsis")
    consumed = sum(1 for it in items if it is not None and it is not Ellipsis)
    full = [SliceSpec(None, None, None)] * max(x.type.rank - consumed, 0)
    if Ellipsis in items:
        i = items.index(Ellipsis)
        items[i:i + 1] = full
    else:
        items += full
    starts, ends, steps, out_shape = [], [], [], []
    axis = 0
    for it in items:
        if it is None:
            out_shape.append(1)
            continue
        n = x.shape[axis]
        if isinstance(it, SliceSpec):
            step = 1 if it.step is None else int(it.step)
            if step <= 0:
                cx.unsupported(f"slices with step {step} (positive steps only)")
            start, stop, _ = slice(it.start, it.stop, step).indices(n)
            stop = max(stop, start)
            starts.append(start)
            ends.append(stop)
            steps.append(step)
            out_shape.append(len(range(start, stop, step)))
        elif isinstance(it, int) and not isinstance(it, bool):
            i = it + n if it < 0 else it
            if not 0 <= i < n:
                cx.invalid("slice_spec", spec, f"indices within the dim of size {n}")
            starts.append(i)
            ends.append(i + 1)
            steps.append(1)
        else:
            cx.unsupported(f"indexing with {it!r} (slices, integers, None and ... only)")
        axis += 1
    if axis != x.type.rank:
        cx.invalid("slice_spec", spec, f"at most {x.type.rank} indices")
    y = x
    if (starts, ends, steps) != ([0] * x.type.rank, list(x.shape), [1] * x.type.rank):
        y = cx.op("slice", x, starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))
    return cx.reshape(y, out_shape)


@converter("keras.ops.Stack", "tf.stack")
def stack(cx: LayerContext, *values, axis=0, name=None):
    xs = [cx.tensor(v) for v in values]
    ax = cx.axis(axis, xs[0].type.rank + 1)
    return cx.concat([cx.reshape(x, (*x.shape[:ax], 1, *x.shape[ax:])) for x in xs], ax)

