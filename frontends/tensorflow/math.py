"""Converters for elementwise math, activations, comparisons, casts and reductions."""
from __future__ import annotations

import numpy as np

from neo import ir
from neo.ir import Value
from neo.ir.types import FLOAT_DTYPES

from .context import TFContext
from .registry import converter

# TensorFlow op -> IR unary op
UNARY = {
    "Abs": "abs", "Acos": "acos", "Acosh": "acosh", "Asin": "asin", "Asinh": "asinh",
    "Atan": "atan", "Atanh": "atanh", "Ceil": "ceil", "Cos": "cos", "Cosh": "cosh", "Erf": "erf",
    "Exp": "exp", "Floor": "floor", "Log": "log", "LogicalNot": "not", "Neg": "neg",
    "Reciprocal": "reciprocal", "Inv": "reciprocal", "Relu": "relu", "Round": "round",
    "Sigmoid": "sigmoid", "Sign": "sign", "Sin": "sin", "Sinh": "sinh", "Softplus": "softplus",
    "Sqrt": "sqrt", "Tan": "tan", "Tanh": "tanh", "Invert": "bitwise_not",
}
# TensorFlow op -> IR binary op (both broadcast like numpy)
BINARY = {
    "Add": "add", "AddV2": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div",
    "Maximum": "maximum", "Minimum": "minimum", "Pow": "pow", "Less": "less",
    "LessEqual": "less_equal", "Greater": "greater", "GreaterEqual": "greater_equal",
    "LogicalAnd": "and", "LogicalOr": "or", "BitwiseAnd": "bitwise_and",
    "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor", "LeftShift": "shift_left",
    "RightShift": "shift_right",
}


def _unary(tf_op: str, ir_op: str) -> None:
    def convert(cx: TFContext, x: Value) -> Value:
        return cx.op(ir_op, x)

    convert.__name__ = tf_op
    converter(tf_op)(convert)


def _binary(tf_op: str, ir_op: str) -> None:
    def convert(cx: TFContext, x: Value, y: Value) -> Value:
        return cx.op(ir_op, x, y)

    convert.__name__ = tf_op
    converter(tf_op)(convert)


for _tf, _ir in UNARY.items():
    _unary(_tf, _ir)
for _tf, _ir in BINARY.items():
    _binary(_tf, _ir)


def _is_float(v: Value) -> bool:
    return v.dtype in FLOAT_DTYPES


# -- arithmetic with TensorFlow's own semantics --------------------------------------------------
@converter("Div")
def Div(cx: TFContext, x: Value, y: Value) -> Value:
    return cx.op("div", x, y)  # integer Div truncates, as the IR's div


def _floor_div(cx: TFContext, x: Value, y: Value) -> Value:
    if _is_float(x):
        return cx.op("floor", cx.op("div", x, y))
    # q = trunc(x / y), one less where the remainder is non-zero and the signs differ
    q = cx.op("div", x, y)
    r = cx.op("sub", x, cx.op("mul", q, y))
    zero = cx.scalar(0, x.dtype)
    fix = cx.op("and", cx.op("not", cx.op("equal", r, zero)),
                cx.op("not", cx.op("equal", cx.op("less", r, zero), cx.op("less", y, zero))))
    return cx.op("sub", q, cx.cast(fix, x.dtype))


@converter("FloorDiv")
def FloorDiv(cx: TFContext, x: Value, y: Value) -> Value:
    return _floor_div(cx, x, y)


@converter("FloorMod", "Mod")
def FloorMod(cx: TFContext, x: Value, y: Value) -> Value:
    # x - floor(x / y) * y: the result takes the divisor's sign
    return cx.op("sub", x, cx.op("mul", _floor_div(cx, x, y), y))


@converter("TruncateDiv")
def TruncateDiv(cx: TFContext, x: Value, y: Value) -> Value:
    q = cx.op("div", x, y)
    if not _is_float(x):
        return q
    # trunc(q) = sign(q) * floor(|q|)
    return cx.op("mul", cx.op("sign", q), cx.op("floor", cx.op("abs", q)))


@converter("DivNoNan")
def DivNoNan(cx: TFContext, x: Value, y: Value) -> Value:
    zero = cx.scalar(0, y.dtype)
    is_zero = cx.op("equal", y, zero)
    safe = cx.op("where", is_zero, cx.scalar(1, y.dtype), y)
    return cx.op("where", is_zero, zero, cx.op("div", x, safe))


@converter("MulNoNan")
def MulNoNan(cx: TFContext, x: Value, y: Value) -> Value:
    zero = cx.scalar(0, y.dtype)
    return cx.op("where", cx.op("equal", y, zero), zero, cx.op("mul", x, y))


@converter("SquaredDifference")
def SquaredDifference(cx: TFContext, x: Value, y: Value) -> Value:
    d = cx.op("sub", x, y)
    return cx.op("mul", d, d)


@converter("Square")
def Square(cx: TFContext, x: Value) -> Value:
    return cx.op("mul", x, x)


@converter("Rsqrt")
def Rsqrt(cx: TFContext, x: Value) -> Value:
    return cx.op("reciprocal", cx.op("sqrt", x))


@converter("Erfc")
def Erfc(cx: TFContext, x: Value) -> Value:
    return cx.op("sub", cx.scalar(1, x.dtype), cx.op("erf", x))


@converter("Log1p")
def Log1p(cx: TFContext, x: Value) -> Value:
    return cx.op("log", cx.op("add", x, cx.scalar(1, x.dtype)))


@converter("Expm1")
def Expm1(cx: TFContext, x: Value) -> Value:
    return cx.op("sub", cx.op("exp", x), cx.scalar(1, x.dtype))


@converter("NotEqual")
def NotEqual(cx: TFContext, x: Value, y: Value, *, incompatible_shape_error=True) -> Value:
    del incompatible_shape_error  # static shapes: an incompatible pair fails to build
    return cx.op("not", cx.op("equal", x, y))


@converter("Equal")
def Equal(cx: TFContext, x: Value, y: Value, *, incompatible_shape_error=True) -> Value:
    del incompatible_shape_error
    return cx.op("equal", x, y)


@converter("LogicalXor")
def LogicalXor(cx: TFContext, x: Value, y: Value) -> Value:
    return cx.op("xor", x, y)


@converter("AddN")
def AddN(cx: TFContext, *inputs: Value) -> Value:
    return cx.add_all(*inputs)


@converter("ClipByValue")
def ClipByValue(cx: TFContext, t: Value, clip_value_min: Value, clip_value_max: Value) -> Value:
    return cx.op("minimum", cx.op("maximum", t, clip_value_min), clip_value_max)


@converter("Select")
def Select(cx: TFContext, condition: Value, t: Value, e: Value) -> Value:
    # TF1 Select: a vector condition picks whole rows of rank > 1 operands
    if condition.type.rank == 1 and t.type.rank > 1:
        condition = cx.reshape(condition, condition.shape + (1,) * (t.type.rank - 1))
    return cx.op("where", condition, t, e)


@converter("SelectV2")
def SelectV2(cx: TFContext, condition: Value, t: Value, e: Value) -> Value:
    return cx.op("where", condition, t, e)


@converter("IsNan")
def IsNan(cx: TFContext, x: Value) -> Value:
    return cx.op("not", cx.op("equal", x, x))


@converter("Cast")
def Cast(cx: TFContext, x: Value, *, DstT, Truncate=False) -> Value:
    del Truncate  # float -> float casts round either way in practice; int casts truncate
    try:
        return cx.cast(x, ir.dtype_name(DstT))
    except TypeError:
        cx.unsupported_attribute("DstT", DstT, "a numeric or bool type")


# -- activations ------------------------------------------------------------------------------
@converter("Relu6")
def Relu6(cx: TFContext, features: Value) -> Value:
    return cx.op("clip", features, min=0.0, max=6.0)


@converter("Elu")
def Elu(cx: TFContext, features: Value) -> Value:
    return cx.op("elu", features, alpha=1.0)


@converter("Selu")
def Selu(cx: TFContext, features: Value) -> Value:
    alpha, scale = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
    return cx.op("mul", cx.op("elu", features, alpha=alpha), cx.scalar(scale, features.dtype))


@converter("LeakyRelu")
def LeakyRelu(cx: TFContext, features: Value, *, alpha) -> Value:
    return cx.op("leaky_relu", features, alpha=float(alpha))


@converter("Softsign")
def Softsign(cx: TFContext, features: Value) -> Value:
    one = cx.scalar(1, features.dtype)
    return cx.op("div", features, cx.op("add", one, cx.op("abs", features)))


# -- reductions -------------------------------------------------------------------------------
def _reduce(cx: TFContext, op: str, x: Value, axes: Value, keep_dims: bool) -> Value:
    ax = cx.axes(axes, x.type.rank, "reduction_indices")
    if not ax:
        return x
    return cx.op(op, x, axes=tuple(ax), keepdims=int(bool(keep_dims)))


@converter("Mean")
def Mean(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    if not _is_float(input):
        cx.unsupported(f"Mean of {input.dtype} (integer division)")
    return _reduce(cx, "reduce_mean", input, reduction_indices, keep_dims)


@converter("Sum")
def Sum(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_sum", input, reduction_indices, keep_dims)


@converter("Max")
def Max(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_max", input, reduction_indices, keep_dims)


@converter("Min")
def Min(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_min", input, reduction_indices, keep_dims)


@converter("Prod")
def Prod(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_prod", input, reduction_indices, keep_dims)


@converter("All", "Any")
def All(cx: TFContext, input: Value, reduction_indices: Value, *, keep_dims) -> Value:
    op = "reduce_min" if cx.op_type == "All" else "reduce_max"
    as_int = cx.cast(input, "int32")
    return cx.cast(_reduce(cx, op, as_int, reduction_indices, keep_dims), "bool")


def _arg(cx: TFContext, x: Value, dimension: Value, output_type: str, extreme: str) -> Value:
    # the first index where x equals its extreme along the axis
    ax = cx.axis(dimension, x.type.rank, "dimension")
    n = x.shape[ax]
    best = cx.op(extreme, x, axes=(ax,), keepdims=1)
    shape = [1] * x.type.rank
    shape[ax] = n
    iota = cx.const(np.arange(n, dtype=ir.np_dtype(output_type)).reshape(shape))
    return cx.op("reduce_min", cx.op("where", cx.op("equal", x, best), iota,
                                     cx.scalar(n, output_type)), axes=(ax,), keepdims=0)


@converter("ArgMax")
def ArgMax(cx: TFContext, input: Value, dimension: Value, *, output_type) -> Value:
    return _arg(cx, input, dimension, output_type, "reduce_max")


@converter("ArgMin")
def ArgMin(cx: TFContext, input: Value, dimension: Value, *, output_type) -> Value:
    return _arg(cx, input, dimension, output_type, "reduce_min")


@converter("Cumsum", "Cumprod")
def Cumsum(cx: TFContext, x: Value, axis: Value, *, exclusive, reverse) -> Value:
    """A log-step (Hillis-Steele) scan of shifted copies: exact for integers."""
    op, identity = ("add", 0) if cx.op_type == "Cumsum" else ("mul", 1)
    ax = cx.axis(axis, x.type.rank)
    n = x.shape[ax]

    def shift(v: Value, by: int) -> Value:
        rank = v.type.rank
        pads = [0] * (2 * rank)
        pads[ax + (rank if reverse else 0)] = by
        value = float(identity) if _is_float(v) else identity
        padded = cx.op("pad", v, pads=tuple(pads), mode="constant", value=value)
        start = by if reverse else 0
        return cx.slice(padded, ax, start, start + n)

    y = shift(x, 1) if exclusive else x
    d = 1
    while d < n:
        y = cx.op(op, y, shift(y, d))
        d *= 2
    return y


@converter("L2Loss")
def L2Loss(cx: TFContext, t: Value) -> Value:
    s = cx.op("reduce_sum", cx.op("mul", t, t), axes=tuple(range(t.type.rank)), keepdims=0)
    return cx.op("mul", s, cx.scalar(0.5, t.dtype))

