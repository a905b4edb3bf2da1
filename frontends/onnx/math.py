"""Converters for elementwise math, comparisons and logic, variadic Min/Max/Sum/Mean, Clip and the
Reduce* family."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neo.ir import Value

from .context import NodeContext, normalize_axes
from .registry import converter

# ONNX op -> (IR op, first opset of the ONNX op); opset 7 brought numpy broadcasting to the
# binaries.
UNARY = {
    "Relu": ("relu", 1), "Sigmoid": ("sigmoid", 1), "Tanh": ("tanh", 1), "Exp": ("exp", 1),
    "Log": ("log", 1), "Sqrt": ("sqrt", 1), "Neg": ("neg", 1), "Abs": ("abs", 1),
    "Erf": ("erf", 9), "Reciprocal": ("reciprocal", 1), "Floor": ("floor", 1), "Ceil": ("ceil", 1),
    "Round": ("round", 11), "Sign": ("sign", 9), "Sin": ("sin", 7), "Cos": ("cos", 7),
    "Softplus": ("softplus", 1), "HardSwish": ("hard_swish", 14), "Not": ("not", 1),
    "Tan": ("tan", 7), "Asin": ("asin", 7), "Acos": ("acos", 7), "Atan": ("atan", 7),
    "Sinh": ("sinh", 9), "Cosh": ("cosh", 9), "Asinh": ("asinh", 9), "Acosh": ("acosh", 9),
    "Atanh": ("atanh", 9), "BitwiseNot": ("bitwise_not", 18),
}
BINARY = {
    "Add": ("add", 7), "Sub": ("sub", 7), "Mul": ("mul", 7), "Div": ("div", 7),
    "Equal": ("equal", 7), "Less": ("less", 7), "Greater": ("greater", 7),
    "LessOrEqual": ("less_equal", 12), "GreaterOrEqual": ("greater_equal", 12),
    "And": ("and", 7), "Or": ("or", 7), "Xor": ("xor", 7),
    "BitwiseAnd": ("bitwise_and", 18), "BitwiseOr": ("bitwise_or", 18),
    "BitwiseXor": ("bitwise_xor", 18),
}


def _unary(ir_op: str) -> Callable:
    def convert(cx: NodeContext, X: Value) -> Value:
        return cx.op(ir_op, X)

    return convert


def _binary(ir_op: str) -> Callable:
    def convert(cx: NodeContext, A: Value, B: Value) -> Value:
        return cx.op(ir_op, A, B)

    return convert


for _onnx_op, (_ir_op, _since) in UNARY.items():
    converter(_onnx_op, since=_since)(_unary(_ir_op))
for _onnx_op, (_ir_op, _since) in BINARY.items():
    converter(_onnx_op, since=_since)(_binary(_ir_op))


@converter("Pow", since=7)
def Pow(cx: NodeContext, X: Value, Y: Value) -> Value:
    # From opset 12 the exponent may have another type; the IR wants one dtype. An integer base
    # with a float exponent (x ** 0.5) is computed in float64 and truncated back, as onnxruntime
    # does; casting the exponent to the integer type instead would give x ** 0.
    if X.dtype != Y.dtype and Y.dtype.startswith(("float", "bfloat")) and not \
            X.dtype.startswith(("float", "bfloat")):
        return cx.cast(cx.op("pow", cx.cast(X, "float64"), cx.cast(Y, "float64")), X.dtype)
    return cx.op("pow", X, cx.cast(Y, X.dtype))


@converter("Where", since=9)
def Where(cx: NodeContext, condition: Value, X: Value, Y: Value) -> Value:
    return cx.op("where", condition, X, Y)


@converter("Mod", since=10)
def Mod(cx: NodeContext, A: Value, B: Value, *, fmod) -> Value:
    if A.is_const and B.is_const:  # mostly shape arithmetic
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.fmod(A.data, B.data) if fmod else np.mod(A.data, B.data)
        return cx.const(out.astype(A.data.dtype))
    if A.dtype.startswith(("float", "bfloat")):
        # fmod (the only mode ONNX allows for floats): a - b * trunc(a / b)
        q = cx.op("div", A, B)
        q = cx.op("where", cx.op("less", q, cx.scalar(0, q.dtype)), cx.op("ceil", q),
                  cx.op("floor", q))
        return cx.op("sub", A, cx.op("mul", q, B))
    # Integer division truncates: a - b * (a / b) has the sign of a (C fmod) ...
    r = cx.op("sub", A, cx.op("mul", cx.op("div", A, B), B))
    if fmod:
        return r
    # ... and Python's mod moves a nonzero remainder to the sign of b.
    zero = cx.scalar(0, r.dtype)
    differs = cx.op("xor", cx.op("less", r, zero), cx.op("less", B, zero))
    fix = cx.op("and", differs, cx.op("not", cx.op("equal", r, zero)))
    return cx.op("where", fix, cx.op("add", r, B), r)


# -- variadic --------------------------------------------------------------------------------------
def _chain(cx: NodeContext, ir_op: str, values: tuple[Value, ...]) -> Value:
    out = values[0]
    for v in values[1:]:
        out = cx.op(ir_op, out, v)
    return out


@converter("Max", since=1)
def Max(cx: NodeContext, *data_0: Value) -> Value:
    return _chain(cx, "maximum", data_0)


@converter("Min", since=1)
def Min(cx: NodeContext, *data_0: Value) -> Value:
    return _chain(cx, "minimum", data_0)


@converter("Sum", since=1)
def Sum(cx: NodeContext, *data_0: Value) -> Value:
    return _chain(cx, "add", data_0)


@converter("Mean", since=1)
def Mean(cx: NodeContext, *data_0: Value) -> Value:
    total = _chain(cx, "add", data_0)
    if len(data_0) == 1:
        return total
    return cx.op("div", total, cx.scalar(len(data_0), total.dtype))


# -- clip ------------------------------------------------------------------------------------------
def _bound(value, dtype: str):
    if value is None:
        return None
    value = np.asarray(value).reshape(-1)[0].item()
    # The opset-6 defaults are +-FLT_MAX: no bound at all.
    if isinstance(value, float) and abs(value) >= 3.4e38:
        return None
    return float(value) if dtype.startswith(("float", "bfloat")) else int(value)


@converter("Clip", since=6)
def Clip_6(cx: NodeContext, input: Value, *, max, min) -> Value:
    return cx.op("clip", input, min=_bound(min, input.dtype), max=_bound(max, input.dtype))


@converter("Clip", since=11)
def Clip(cx: NodeContext, input: Value, min: Value | None = None, max: Value | None = None
         ) -> Value:
    lo = cx.constant(min, "min")
    hi = cx.constant(max, "max")
    return cx.op("clip", input, min=_bound(lo, input.dtype), max=_bound(hi, input.dtype))


# -- reductions ------------------------------------------------------------------------------------
# ONNX op -> (IR reduction, pre-map, post-map, opset where axes became an input)
REDUCE = {
    "ReduceSum": ("reduce_sum", None, None, 13),
    "ReduceMean": ("reduce_mean", None, None, 18),
    "ReduceMax": ("reduce_max", None, None, 18),
    "ReduceMin": ("reduce_min", None, None, 18),
    "ReduceProd": ("reduce_prod", None, None, 18),
    "ReduceL1": ("reduce_sum", "abs", None, 18),
    "ReduceL2": ("reduce_sum", "square", "sqrt", 18),
    "ReduceSumSquare": ("reduce_sum", "square", None, 18),
    "ReduceLogSum": ("reduce_sum", None, "log", 18),
    "ReduceLogSumExp": ("reduce_sum", "exp", "log", 18),
}


def _reduce(cx: NodeContext, spec: tuple, data: Value, axes, keepdims, noop_with_empty_axes
            ) -> Value:
    ir_op, pre, post, _ = spec
    axes = normalize_axes(axes or (), data.type.rank)
    if not axes:
        if noop_with_empty_axes:
            return data
        axes = list(range(data.type.rank))
    x = data
    if pre == "square":
        x = cx.op("mul", x, x)
    elif pre is not None:
        x = cx.op(pre, x)
    y = cx.op(ir_op, x, axes=tuple(sorted(set(axes))), keepdims=int(keepdims))
    return y if post is None else cx.op(post, y)


def _reduce_attr_axes(spec: tuple) -> Callable:
    def convert(cx: NodeContext, data: Value, *, axes, keepdims) -> Value:
        return _reduce(cx, spec, data, axes, keepdims, 0)

    return convert


def _reduce_input_axes(spec: tuple) -> Callable:
    def convert(cx: NodeContext, data: Value, axes: Value | None = None, *, keepdims,
                noop_with_empty_axes) -> Value:
        return _reduce(cx, spec, data, cx.ints(axes, "axes"), keepdims, noop_with_empty_axes)

    return convert


for _onnx_op, _spec in REDUCE.items():
    converter(_onnx_op, since=1)(_reduce_attr_axes(_spec))
    converter(_onnx_op, since=_spec[3])(_reduce_input_axes(_spec))


@converter("IsNaN", since=9)
def IsNaN(cx: NodeContext, X: Value) -> Value:
    # NaN is the only value not equal to itself
    return cx.op("not", cx.op("equal", X, X))


@converter("IsInf", since=10)
def IsInf(cx: NodeContext, X: Value, *, detect_negative, detect_positive) -> Value:
    conds = [cx.op("equal", X, cx.scalar(v, X.dtype))
             for v, on in ((np.inf, detect_positive), (-np.inf, detect_negative)) if on]
    if not conds:
        return cx.op("less", X, cx.scalar(-np.inf, X.dtype))  # never true
    return conds[0] if len(conds) == 1 else cx.op("or", *conds)


@converter("BitShift", since=11)
def BitShift(cx: NodeContext, X: Value, Y: Value, *, direction) -> Value:
    if direction not in ("LEFT", "RIGHT"):
        cx.unsupported_attribute("direction", direction, "LEFT, RIGHT")
    return cx.op("shift_left" if direction == "LEFT" else "shift_right", X, Y)
