"""Converters for elementwise arithmetic, comparisons, reductions and ARG_MAX/ARG_MIN.

Binary operators broadcast numpy-style, as the IR's do."""
from __future__ import annotations

import numpy as np

from neo.ir import Value

from . import quantized as q
from .context import TfliteContext
from .registry import converter


def _operands(cx: TfliteContext, a: Value, b: Value) -> tuple[Value, Value]:
    """Both operands; float ones as float32 (dequantizing quantized constants)."""
    if a.dtype.startswith("float") or b.dtype.startswith("float"):
        return cx.dequantized(a, 0), cx.dequantized(b, 1)
    for i, v in enumerate((a, b)):
        t = cx.tensor(i)
        if t is not None and t.quant is not None:
            cx.dequantized(v, i)  # raises: quantized activations
    if a.dtype != b.dtype:
        cx.invalid("operands", (a.dtype, b.dtype), "operands of one dtype")
    return a, b


def _binary(cx: TfliteContext, op: str, a: Value, b: Value, fused: str | None = None) -> Value:
    x, y = _operands(cx, a, b)
    return cx.activation(cx.op(op, x, y), fused)


def _quantized(*vs: Value) -> bool:
    return any(q.is_quantized(v) for v in vs)


@converter("ADD")
def ADD(cx: TfliteContext, x: Value, y: Value, *, fused_activation_function) -> Value:
    if _quantized(x, y):
        return q.add(cx, x, y, fused_activation_function)
    return _binary(cx, "add", x, y, fused_activation_function)


@converter("SUB")
def SUB(cx: TfliteContext, x: Value, y: Value, *, fused_activation_function) -> Value:
    if _quantized(x, y):
        return q.add(cx, x, y, fused_activation_function, negate_b=True)
    return _binary(cx, "sub", x, y, fused_activation_function)


@converter("MUL")
def MUL(cx: TfliteContext, x: Value, y: Value, *, fused_activation_function) -> Value:
    if _quantized(x, y):
        return q.mul(cx, x, y, fused_activation_function)
    return _binary(cx, "mul", x, y, fused_activation_function)


@converter("DIV")
def DIV(cx: TfliteContext, x: Value, y: Value, *, fused_activation_function) -> Value:
    a, b = _operands(cx, x, y)
    if not a.dtype.startswith("float"):
        return cx.activation(FLOOR_DIV(cx, a, b), fused_activation_function)
    return cx.activation(cx.op("div", a, b), fused_activation_function)


@converter("SQUARED_DIFFERENCE")
def SQUARED_DIFFERENCE(cx: TfliteContext, x: Value, y: Value) -> Value:
    a, b = _operands(cx, x, y)
    d = cx.op("sub", a, b)
    return cx.op("mul", d, d)


@converter("MAXIMUM")
def MAXIMUM(cx: TfliteContext, x: Value, y: Value) -> Value:
    return _binary(cx, "maximum", x, y)


@converter("MINIMUM")
def MINIMUM(cx: TfliteContext, x: Value, y: Value) -> Value:
    return _binary(cx, "minimum", x, y)


@converter("POW")
def POW(cx: TfliteContext, x: Value, y: Value) -> Value:
    return _binary(cx, "pow", x, y)


@converter("FLOOR_DIV")
def FLOOR_DIV(cx: TfliteContext, x: Value, y: Value) -> Value:
    a, b = _operands(cx, x, y)
    if a.dtype.startswith("float"):
        return cx.op("floor", cx.op("div", a, b))
    # the IR's integer div truncates toward zero; floor it where the signs differ and it is
    # inexact: q - (q * b != a and (a < 0) != (b < 0))
    q = cx.op("div", a, b)
    zero = cx.scalar(0, a.dtype)
    inexact = cx.op("not", cx.op("equal", cx.op("mul", q, b), a))
    signs = cx.op("xor", cx.op("less", a, zero), cx.op("less", b, zero))
    fix = cx.cast(cx.op("and", inexact, signs), a.dtype)
    return cx.op("sub", q, fix)


@converter("FLOOR_MOD")
def FLOOR_MOD(cx: TfliteContext, x: Value, y: Value) -> Value:
    a, b = _operands(cx, x, y)
    return cx.op("sub", a, cx.op("mul", FLOOR_DIV(cx, a, b), b))


# -- unary -----------------------------------------------------------------------------------------
def _float_unary(cx: TfliteContext, op: str, x: Value) -> Value:
    return cx.op(op, cx.dequantized(x, 0))


for _name, _op in (("EXP", "exp"), ("LOG", "log"), ("SQRT", "sqrt"), ("SIN", "sin"),
                   ("COS", "cos"), ("FLOOR", "floor"), ("CEIL", "ceil"), ("ROUND", "round")):
    def _make(op):
        def unary(cx: TfliteContext, x: Value) -> Value:
            return _float_unary(cx, op, x)
        return unary

    _fn = _make(_op)
    _fn.__name__ = _fn.__qualname__ = _name
    converter(_name)(_fn)


@converter("ABS")
def ABS(cx: TfliteContext, x: Value) -> Value:
    return cx.op("abs", x if not x.dtype.startswith("float") else cx.dequantized(x, 0))


@converter("NEG")
def NEG(cx: TfliteContext, x: Value) -> Value:
    return cx.op("neg", x if not x.dtype.startswith("float") else cx.dequantized(x, 0))


@converter("RSQRT")
def RSQRT(cx: TfliteContext, x: Value) -> Value:
    return cx.op("reciprocal", cx.op("sqrt", cx.dequantized(x, 0)))


@converter("SQUARE")
def SQUARE(cx: TfliteContext, x: Value) -> Value:
    v = cx.dequantized(x, 0) if x.dtype.startswith("float") else x
    return cx.op("mul", v, v)


# -- comparisons and logic -------------------------------------------------------------------------
for _name, _op in (("EQUAL", "equal"), ("LESS", "less"), ("LESS_EQUAL", "less_equal"),
                   ("GREATER", "greater"), ("GREATER_EQUAL", "greater_equal"),
                   ("LOGICAL_AND", "and"), ("LOGICAL_OR", "or")):
    def _make_cmp(op):
        def compare(cx: TfliteContext, x: Value, y: Value) -> Value:
            return _binary(cx, op, x, y)
        return compare

    _fn = _make_cmp(_op)
    _fn.__name__ = _fn.__qualname__ = _name
    converter(_name)(_fn)


@converter("NOT_EQUAL")
def NOT_EQUAL(cx: TfliteContext, x: Value, y: Value) -> Value:
    return cx.op("not", _binary(cx, "equal", x, y))


@converter("LOGICAL_NOT")
def LOGICAL_NOT(cx: TfliteContext, x: Value) -> Value:
    return cx.op("not", x)


@converter("SELECT", "SELECT_V2")
def SELECT(cx: TfliteContext, condition: Value, x: Value, y: Value) -> Value:
    # SELECT (v1) takes a condition of x's shape or a vector along its first dim
    if condition.type.rank == 1 and x.type.rank > 1 and condition.shape[0] == x.shape[0] \
            and cx.info.op == "SELECT":
        condition = cx.reshape(condition, condition.shape + (1,) * (x.type.rank - 1))
    a, b = (x, y) if not x.dtype.startswith("float") else (cx.dequantized(x, 1),
                                                          cx.dequantized(y, 2))
    return cx.op("where", condition, a, b)


# -- reductions ------------------------------------------------------------------------------------
def _reduce(cx: TfliteContext, op: str, x: Value, axis: Value, keep_dims) -> Value:
    if q.is_quantized(x) and op not in ("reduce_max", "reduce_min"):
        cx.unsupported(f"{cx.op_type} of quantized integers")
    v = cx.dequantized(x, 0) if x.dtype.startswith("float") else x
    axes = cx.axes(axis, v.type.rank)
    if not axes:
        return v
    return cx.op(op, v, axes=tuple(axes), keepdims=int(bool(keep_dims)))


@converter("MEAN")
def MEAN(cx: TfliteContext, input: Value, axis: Value, *, keep_dims) -> Value:
    if q.is_quantized(input):
        return q.mean(cx, input, cx.axes(axis, input.type.rank), bool(keep_dims))
    return _reduce(cx, "reduce_mean", input, axis, keep_dims)


@converter("SUM")
def SUM(cx: TfliteContext, input: Value, axis: Value, *, keep_dims) -> Value:
    if q.is_quantized(input):
        return q.mean(cx, input, cx.axes(axis, input.type.rank), bool(keep_dims),
                      compute_sum=True)
    return _reduce(cx, "reduce_sum", input, axis, keep_dims)


@converter("REDUCE_MAX")
def REDUCE_MAX(cx: TfliteContext, input: Value, axis: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_max", input, axis, keep_dims)


@converter("REDUCE_MIN")
def REDUCE_MIN(cx: TfliteContext, input: Value, axis: Value, *, keep_dims) -> Value:
    return _reduce(cx, "reduce_min", input, axis, keep_dims)


@converter("REDUCE_PROD")
def REDUCE_PROD(cx: TfliteContext, input: Value, axis: Value, *, keep_dims) -> Value:
    if q.is_quantized(input):
        return q.reduce_prod(cx, input, cx.axes(axis, input.type.rank), bool(keep_dims))
    return _reduce(cx, "reduce_prod", input, axis, keep_dims)


def _arg(cx: TfliteContext, x: Value, dim: Value, output_type: str, extreme: str) -> Value:
    # the first index of the extreme: min { i : x[i] == extreme(x) }
    v = cx.dequantized(x, 0) if x.dtype.startswith("float") else x
    ax = cx.axis(dim, v.type.rank, "axis")
    n = v.shape[ax]
    shape = [1] * v.type.rank
    shape[ax] = n
    iota = cx.const(np.arange(n, dtype=np.int64).reshape(shape))
    hit = cx.op("equal", v, cx.op(extreme, v, axes=(ax,), keepdims=1))
    idx = cx.op("reduce_min", cx.op("where", hit, iota, cx.scalar(n, "int64")), axes=(ax,),
                keepdims=0)
    out = {"INT32": "int32", "INT64": "int64"}.get(output_type)
    if out is None:
        cx.unsupported_attribute("output_type", output_type, "INT32, INT64")
    return cx.cast(idx, out)


@converter("ARG_MAX")
def ARG_MAX(cx: TfliteContext, input: Value, dim: Value, *, output_type) -> Value:
    return _arg(cx, input, dim, output_type, "reduce_max")


@converter("ARG_MIN")
def ARG_MIN(cx: TfliteContext, input: Value, dim: Value, *, output_type) -> Value:
    return _arg(cx, input, dim, output_type, "reduce_min")
