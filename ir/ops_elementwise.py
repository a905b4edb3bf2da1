"""Elementwise and broadcasting ops: unary math, activations, binary arithmetic, comparison, where, cast."""
from __future__ import annotations

import math

import numpy as np

from .registry import FusionKind, define_op
from .types import FLOAT_DTYPES, INT_DTYPES, TensorType, np_dtype


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0}
        dims.discard(1)
        if len(dims) > 1:
            raise ValueError(f"shapes {' and '.join(map(str, shapes))} do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def _erf(x):
    from scipy.special import erf  # scipy is optional; numpy has no erf

    return erf(x)


def _np_erf(x: np.ndarray) -> np.ndarray:
    try:
        return _erf(x).astype(x.dtype)
    except ImportError:
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return (0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))).astype(x.dtype)
    return (0.5 * x * (1 + _np_erf((x / np.sqrt(2)).astype(x.dtype)))).astype(x.dtype)


def _clip(x, min=None, max=None):
    out = x
    if min is not None:
        out = np.maximum(out, np.asarray(min).astype(x.dtype))
    if max is not None:
        out = np.minimum(out, np.asarray(max).astype(x.dtype))
    return out


def _round(x):
    return np.round(x)  # numpy rounds half to even, as ONNX Round does


# name -> (numpy reference taking (x, **attrs), attribute defaults, dtype class allowed)
UNARY: dict[str, tuple] = {
    "relu": (lambda x: np.maximum(x, np.zeros((), x.dtype)), {}, "num"),
    "sigmoid": (lambda x: (1 / (1 + np.exp(-x))).astype(x.dtype), {}, "float"),
    "tanh": (np.tanh, {}, "float"),
    "exp": (np.exp, {}, "float"),
    "log": (np.log, {}, "float"),
    "sqrt": (np.sqrt, {}, "float"),
    "neg": (np.negative, {}, "num"),
    "abs": (np.abs, {}, "num"),
    "erf": (_np_erf, {}, "float"),
    "reciprocal": (lambda x: (1 / x).astype(x.dtype), {}, "float"),
    "floor": (np.floor, {}, "float"),
    "ceil": (np.ceil, {}, "float"),
    "round": (_round, {}, "float"),
    "sign": (np.sign, {}, "num"),
    "sin": (np.sin, {}, "float"),
    "cos": (np.cos, {}, "float"),
    "softplus": (lambda x: np.log1p(np.exp(x)).astype(x.dtype), {}, "float"),
    "silu": (lambda x: (x / (1 + np.exp(-x))).astype(x.dtype), {}, "float"),
    "not": (np.logical_not, {}, "bool"),
    "leaky_relu": (lambda x, alpha: np.where(x >= 0, x, x * x.dtype.type(alpha)).astype(x.dtype),
                   {"alpha": 0.01}, "float"),
    "elu": (lambda x, alpha: np.where(x >= 0, x, x.dtype.type(alpha) * (np.exp(x) - 1))
            .astype(x.dtype), {"alpha": 1.0}, "float"),
    "clip": (_clip, {"min": None, "max": None}, "num"),
    "hard_sigmoid": (lambda x, alpha, beta: np.clip(x * x.dtype.type(alpha) + x.dtype.type(beta), 0, 1)
                     .astype(x.dtype), {"alpha": 0.2, "beta": 0.5}, "float"),
    "hard_swish": (lambda x: (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype), {}, "float"),
    "gelu": (_gelu, {"approximate": "none"}, "float"),
    # trigonometric and hyperbolic functions (libm calls in codegen)
    "tan": (np.tan, {}, "float"),
    "asin": (np.arcsin, {}, "float"),
    "acos": (np.arccos, {}, "float"),
    "atan": (np.arctan, {}, "float"),
    "sinh": (np.sinh, {}, "float"),
    "cosh": (np.cosh, {}, "float"),
    "asinh": (np.arcsinh, {}, "float"),
    "acosh": (np.arccosh, {}, "float"),
    "atanh": (np.arctanh, {}, "float"),
    "bitwise_not": (np.invert, {}, "int"),
}

BINARY: dict[str, tuple] = {
    "add": (np.add, "num"),
    "sub": (np.subtract, "num"),
    "mul": (np.multiply, "num"),
    "div": (None, "num"),  # below: integer division truncates toward zero, as ONNX's reference
    "pow": (None, "num"),
    "minimum": (np.minimum, "num"),
    "maximum": (np.maximum, "num"),
    "equal": (np.equal, "cmp"),
    "less": (np.less, "cmp"),
    "less_equal": (np.less_equal, "cmp"),
    "greater": (np.greater, "cmp"),
    "greater_equal": (np.greater_equal, "cmp"),
    "and": (np.logical_and, "bool"),
    "or": (np.logical_or, "bool"),
    "xor": (np.logical_xor, "bool"),
    "bitwise_and": (np.bitwise_and, "int"),
    "bitwise_or": (np.bitwise_or, "int"),
    "bitwise_xor": (np.bitwise_xor, "int"),
    "shift_left": (np.left_shift, "int"),
    "shift_right": (np.right_shift, "int"),  # logical for unsigned, arithmetic for signed types
}


def _div(a, b):
    if a.dtype.kind in "iu":
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.trunc(a.astype(np.float64) / b.astype(np.float64))
        return q.astype(a.dtype)
    return np.divide(a, b).astype(a.dtype)


def _pow(a, b):
    if a.dtype.kind == "f":
        return np.power(a, b.astype(a.dtype)).astype(a.dtype)
    return np.power(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)


def _check_class(name: str, cls: str, dtype: str):
    if cls == "float" and dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} needs a float tensor, got {dtype}")
    if cls == "bool" and dtype != "bool":
        raise TypeError(f"{name} needs a bool tensor, got {dtype}")
    if cls == "int" and dtype not in INT_DTYPES:
        raise TypeError(f"{name} needs an integer tensor, got {dtype}")
    if cls == "num" and dtype == "bool":
        raise TypeError(f"{name} needs a numeric tensor, got bool")


def _unary(name: str, fn, defaults: dict, cls: str):
    def infer(attrs, types):
        _check_class(name, cls, types[0].dtype)
        return [types[0]]

    def reference(attrs, x):
        kw = {k: attrs[k] for k in defaults}
        return np.asarray(fn(x, **kw)).astype(x.dtype)

    define_op(name, FusionKind.ELEMWISE, infer, reference, inputs=1, attrs=defaults)


def _binary(name: str, fn, cls: str):
    def infer(attrs, types):
        a, b = types
        if a.dtype != b.dtype:
            raise TypeError(f"{name} operands differ in dtype: {a.dtype} and {b.dtype}")
        _check_class(name, cls if cls in ("bool", "int") else ("num" if cls != "cmp" else "any"),
                     a.dtype)
        out = "bool" if cls in ("cmp", "bool") else a.dtype
        return [TensorType(broadcast_shapes(a.shape, b.shape), out)]

    fn = fn or {"div": _div, "pow": _pow}[name]

    def reference(attrs, a, b):
        out = fn(a, b)
        return np.asarray(out).astype(bool if cls in ("cmp", "bool") else a.dtype)

    define_op(name, FusionKind.BROADCAST, infer, reference, inputs=2)


for _n, (_f, _d, _c) in UNARY.items():
    _unary(_n, _f, _d, _c)
for _n, (_f, _c) in BINARY.items():
    _binary(_n, _f, _c)


def _where_infer(attrs, types):
    c, a, b = types
    if c.dtype != "bool":
        raise TypeError(f"where condition must be bool, got {c.dtype}")
    if a.dtype != b.dtype:
        raise TypeError(f"where branches differ in dtype: {a.dtype} and {b.dtype}")
    return [TensorType(broadcast_shapes(c.shape, a.shape, b.shape), a.dtype)]


define_op("where", FusionKind.BROADCAST, _where_infer,
          lambda attrs, c, a, b: np.where(c, a, b).astype(a.dtype), inputs=3)


def _cast_reference(attrs, x):
    to = np_dtype(attrs["to"])
    if x.dtype.kind == "f" and to.kind in "iu":
        # float -> int truncates toward zero (C semantics); out-of-range is undefined, keep numpy's.
        with np.errstate(invalid="ignore"):
            return np.trunc(x).astype(to)
    return x.astype(to)


define_op("cast", FusionKind.ELEMWISE,
          lambda attrs, t: [TensorType(t[0].shape, attrs["to"])],
          _cast_reference, inputs=1, attrs={"to": "float32"})

# copy: materializes a value into a new buffer (graph outputs that alias inputs or params).
define_op("copy", FusionKind.ELEMWISE, lambda attrs, t: [t[0]], lambda attrs, x: x.copy())

ALL_INT = INT_DTYPES
