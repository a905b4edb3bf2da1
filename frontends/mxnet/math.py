"""Arithmetic: elementwise and broadcast binary ops, the `_*_scalar` family, unary math,
reductions, dot and batch_dot, where, clip, Cast.

MXNet's comparisons and logical ops return 0/1 in the dtype of their operands, not booleans.
`elemwise_*` need equal shapes, `broadcast_*` broadcast numpy-style; both map onto the IR's
broadcasting ops.
"""
from __future__ import annotations

import math as _math

import numpy as np

from neo import ir
from neo.ir import Value

from .context import MxContext, as_tuple
from .registry import converter

ARITH = {"add": "add", "plus": "add", "sub": "sub", "minus": "sub", "mul": "mul", "div": "div",
         "maximum": "maximum", "minimum": "minimum", "power": "pow"}
COMPARE = {"equal": "equal", "greater": "greater", "greater_equal": "greater_equal",
           "lesser": "less", "lesser_equal": "less_equal"}
LOGICAL = {"logical_and": "and", "logical_or": "or", "logical_xor": "xor"}


def _cmp(cx: MxContext, op: str, a: Value, b: Value) -> Value:
    """A comparison as 0/1 in the operands' dtype."""
    if op == "not_equal":
        c = cx.op("not", cx.op("equal", a, b))
    else:
        c = cx.op(COMPARE[op], a, b)
    return cx.cast(c, a.dtype)


def _truth(cx: MxContext, v: Value) -> Value:
    return v if v.dtype == "bool" else cx.op("not", cx.op("equal", v, cx.scalar(0, v.dtype)))


def binary(cx: MxContext, op: str, a: Value, b: Value) -> Value:
    if op in ARITH:
        return cx.op(ARITH[op], a, b)
    if op in COMPARE or op == "not_equal":
        return _cmp(cx, op, a, b)
    if op in LOGICAL:
        return cx.cast(cx.op(LOGICAL[op], _truth(cx, a), _truth(cx, b)), a.dtype)
    if op == "hypot":
        return cx.op("sqrt", cx.op("add", cx.op("mul", a, a), cx.op("mul", b, b)))
    raise AssertionError(op)


def _register_binary() -> None:
    def make(op: str, same_shape: bool):
        def convert(cx: MxContext, lhs: Value, rhs: Value) -> Value:
            if same_shape and lhs.shape != rhs.shape and id(lhs) not in cx.deferred \
                    and id(rhs) not in cx.deferred:
                raise ValueError(f"elemwise operands differ in shape: {list(lhs.shape)} and "
                                 f"{list(rhs.shape)}")
            return binary(cx, op, lhs, rhs)
        return convert

    for op in ("add", "sub", "mul", "div"):
        converter(f"elemwise_{op}")(make(op, True))
    for alias, op in (("_plus", "add"), ("_Plus", "add"), ("_add", "add"), ("_minus", "sub"),
                      ("_Minus", "sub"), ("_sub", "sub"), ("_mul", "mul"), ("_Mul", "mul"),
                      ("_div", "div"), ("_Div", "div"), ("_maximum", "maximum"),
                      ("_Maximum", "maximum"), ("_minimum", "minimum"), ("_Minimum", "minimum"),
                      ("_power", "power"), ("_Power", "power"), ("_equal", "equal"),
                      ("_not_equal", "not_equal"), ("_greater", "greater"),
                      ("_greater_equal", "greater_equal"), ("_lesser", "lesser"),
                      ("_lesser_equal", "lesser_equal"), ("_hypot", "hypot")):
        converter(alias)(make(op, True))
    for op in (*ARITH, *COMPARE, "not_equal", *LOGICAL, "hypot"):
        converter(f"broadcast_{op}")(make(op, False))


_register_binary()


# -- the _*_scalar family: x OP scalar, and the reversed forms scalar OP x ------------------------
SCALAR_OPS = {"plus": "add", "minus": "sub", "mul": "mul", "div": "div", "power": "power",
              "maximum": "maximum", "minimum": "minimum", "hypot": "hypot",
              **{k: k for k in (*COMPARE, "not_equal", *LOGICAL)}}
REVERSED = {"rminus": "minus", "rdiv": "div", "rpower": "power"}


def _scalar_of(cx: MxContext, x: Value, scalar) -> Value:
    if scalar is None:
        cx.required("scalar")
    value = float(scalar)
    if not x.dtype.startswith(("float", "bfloat")):
        value = int(value)
    return cx.scalar(value, x.dtype)


def _register_scalar() -> None:
    def make(op: str, reverse: bool):
        def convert(cx: MxContext, data: Value, *, scalar=None, is_int=False) -> Value:
            s = _scalar_of(cx, data, scalar)
            return binary(cx, SCALAR_OPS[op], s, data) if reverse else \
                binary(cx, SCALAR_OPS[op], data, s)
        return convert

    for name in SCALAR_OPS:
        converter(f"_{name}_scalar")(make(name, False))
    for name, op in REVERSED.items():
        converter(f"_{name}_scalar")(make(op, True))
    for alias, op in (("_PlusScalar", "plus"), ("_MinusScalar", "minus"), ("_MulScalar", "mul"),
                      ("_DivScalar", "div"), ("_PowerScalar", "power"),
                      ("_MaximumScalar", "maximum"), ("_MinimumScalar", "minimum")):
        converter(alias)(make(op, False))
    for alias, op in (("_RMinusScalar", "minus"), ("_RDivScalar", "div"),
                      ("_RPowerScalar", "power")):
        converter(alias)(make(op, True))


_register_scalar()


# -- unary math ------------------------------------------------------------------------------------
UNARY = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log",
         "sqrt": "sqrt", "abs": "abs", "negative": "neg", "reciprocal": "reciprocal",
         "sin": "sin", "cos": "cos", "tan": "tan", "arcsin": "asin", "arccos": "acos",
         "arctan": "atan", "sinh": "sinh", "cosh": "cosh", "arcsinh": "asinh",
         "arccosh": "acosh", "arctanh": "atanh", "erf": "erf", "floor": "floor", "ceil": "ceil",
         "sign": "sign", "softplus": "softplus"}


def unary(cx: MxContext, op: str, x: Value) -> Value:
    if op in UNARY:
        return cx.op(UNARY[op], x)
    one = cx.scalar(1, x.dtype)
    if op == "square":
        return cx.op("mul", x, x)
    if op == "rsqrt":
        return cx.op("reciprocal", cx.op("sqrt", x))
    if op == "cbrt":  # sign(x) * |x|^(1/3)
        return cx.op("mul", cx.op("sign", x), cx.op("pow", cx.op("abs", x),
                                                     cx.scalar(1 / 3, x.dtype)))
    if op == "expm1":
        return cx.op("sub", cx.op("exp", x), one)
    if op == "log1p":
        return cx.op("log", cx.op("add", x, one))
    if op == "log2":
        return cx.op("div", cx.op("log", x), cx.scalar(_math.log(2), x.dtype))
    if op == "log10":
        return cx.op("div", cx.op("log", x), cx.scalar(_math.log(10), x.dtype))
    if op == "round":  # half away from zero: sign(x) * floor(|x| + 0.5)
        return cx.op("mul", cx.op("sign", x), cx.op("floor", cx.op(
            "add", cx.op("abs", x), cx.scalar(0.5, x.dtype))))
    if op == "rint":  # half to even
        return cx.op("round", x)
    if op == "fix":  # toward zero
        return cx.op("mul", cx.op("sign", x), cx.op("floor", cx.op("abs", x)))
    if op == "trunc":
        return cx.op("mul", cx.op("sign", x), cx.op("floor", cx.op("abs", x)))
    if op == "softsign":
        return cx.op("div", x, cx.op("add", cx.op("abs", x), one))
    if op == "logical_not":
        return cx.cast(cx.op("not", _truth(cx, x)), x.dtype)
    if op == "relu6":
        return cx.op("clip", x, min=0.0, max=6.0)
    raise AssertionError(op)


def _register_unary() -> None:
    def make(op: str):
        def convert(cx: MxContext, data: Value) -> Value:
            return unary(cx, op, data)
        return convert

    for op in (*UNARY, "square", "rsqrt", "cbrt", "expm1", "log1p", "log2", "log10", "round",
               "rint", "fix", "trunc", "softsign", "logical_not"):
        converter(op)(make(op))


_register_unary()


@converter("clip")
def clip(cx: MxContext, data: Value, *, a_min=None, a_max=None) -> Value:
    if a_min is None:
        cx.required("a_min")
    if a_max is None:
        cx.required("a_max")
    if data.dtype.startswith("float"):
        return cx.op("clip", data, min=float(a_min), max=float(a_max))
    return cx.op("clip", data, min=int(a_min), max=int(a_max))


@converter("Cast", "cast")
def Cast(cx: MxContext, data: Value, *, dtype=None) -> Value:
    if dtype is None:
        cx.required("dtype")
    try:
        ir.np_dtype(str(dtype))
    except (KeyError, TypeError, ValueError):
        cx.unsupported_attribute("dtype", dtype, "float32, float64, float16, int8, uint8, "
                                 "int32, int64, bool")
    return cx.cast(data, str(dtype))


@converter("add_n", "ElementWiseSum", "_sum")
def add_n(cx: MxContext, *args: Value, num_args=None) -> Value:
    return cx.add_all(*args)


# -- reductions ------------------------------------------------------------------------------------
def _reduce_axes(cx: MxContext, x: Value, axis, exclude: bool) -> tuple[int, ...]:
    rank = x.type.rank
    ax = as_tuple(axis)
    axes = tuple(sorted({cx.axis(a, rank) for a in ax})) if ax else tuple(range(rank))
    if exclude:
        axes = tuple(i for i in range(rank) if i not in axes)
    return axes


def _register_reductions() -> None:
    def make(ir_op: str):
        def convert(cx: MxContext, data: Value, *, axis=None, keepdims=False,
                    exclude=False) -> Value:
            axes = _reduce_axes(cx, data, axis, bool(exclude))
            if not axes:
                return data
            y = cx.op(ir_op, data, axes=axes, keepdims=int(bool(keepdims)))
            return cx.reshape(y, (1,)) if y.type.rank == 0 else y  # MXNet 1.x has no 0-d arrays
        return convert

    for names, ir_op in ((("sum", "sum_axis"), "reduce_sum"), (("mean",), "reduce_mean"),
                         (("max", "max_axis"), "reduce_max"), (("min", "min_axis"), "reduce_min"),
                         (("prod",), "reduce_prod")):
        converter(*names)(make(ir_op))


_register_reductions()


@converter("norm")
def norm(cx: MxContext, data: Value, *, ord=2, axis=None, keepdims=False, out_dtype=None
         ) -> Value:
    axes = _reduce_axes(cx, data, axis, False)
    if ord not in (1, 2):
        cx.unsupported_attribute("ord", ord, "1, 2")
    if ord == 1:
        y = cx.op("reduce_sum", cx.op("abs", data), axes=axes, keepdims=int(bool(keepdims)))
    else:
        y = cx.op("sqrt", cx.op("reduce_sum", cx.op("mul", data, data), axes=axes,
                                keepdims=int(bool(keepdims))))
    return cx.reshape(y, (1,)) if y.type.rank == 0 else y


# -- products --------------------------------------------------------------------------------------
def _swap_last(cx: MxContext, x: Value) -> Value:
    r = x.type.rank
    return cx.transpose(x, tuple(range(r - 2)) + (r - 1, r - 2))


@converter("dot")
def dot(cx: MxContext, lhs: Value, rhs: Value, *, transpose_a=False, transpose_b=False
        ) -> Value:
    # N-D dot: the last axis of lhs with the first axis of rhs (transposes reverse all axes)
    a, b = lhs, rhs
    if transpose_a:
        a = cx.transpose(a, tuple(reversed(range(a.type.rank))))
    if transpose_b:
        b = cx.transpose(b, tuple(reversed(range(b.type.rank))))
    if a.type.rank == 1 and b.type.rank == 1:
        return cx.reshape(cx.op("matmul", a, b), (1,))
    k = a.shape[-1]
    if b.shape[0] != k:
        raise ValueError(f"dot: {list(a.shape)} and {list(b.shape)} do not contract")
    a2 = cx.reshape(a, (int(np.prod(a.shape[:-1])), k))
    b2 = cx.reshape(b, (k, int(np.prod(b.shape[1:]))))
    return cx.reshape(cx.op("matmul", a2, b2), a.shape[:-1] + b.shape[1:])


@converter("batch_dot")
def batch_dot(cx: MxContext, lhs: Value, rhs: Value, *, transpose_a=False, transpose_b=False
              ) -> Value:
    a = _swap_last(cx, lhs) if transpose_a else lhs
    b = _swap_last(cx, rhs) if transpose_b else rhs
    return cx.op("matmul", a, b)


@converter("where")
def where(cx: MxContext, condition: Value, x: Value, y: Value) -> Value:
    c = _truth(cx, condition)
    if c.type.rank == 1 and x.type.rank > 1:  # one condition per row (the first axis)
        c = cx.reshape(c, (c.shape[0],) + (1,) * (x.type.rank - 1))
    return cx.op("where", c, x, y)


@converter("_contrib_div_sqrt_dim")
def div_sqrt_dim(cx: MxContext, data: Value) -> Value:
    return cx.op("div", data, cx.scalar(_math.sqrt(data.shape[-1]), data.dtype))
